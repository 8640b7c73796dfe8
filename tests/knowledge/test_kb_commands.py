"""Documents in a conversation: ``kb add`` (a file or a replied message), ``kb list``,
``kb forget``, ``kb on|off``, answers that draw on the passages and cite them, and bad input
answered in one line with nothing stored."""

from __future__ import annotations

from adapters.memory_knowledge import MemoryKnowledge
from adapters.memory_store import MemoryStore
from adapters.ollama_llm import OllamaLLM
from bots.app import build_services
from core.chat import ChatConfig
from tests.fakes.ollama import FakeOllama
from tests.knowledge.conftest import KnowledgeHarness, MemoryFiles
from tests.knowledge.pdf import pdf_with_pages

MANUAL = """# Installing

Run the installer and accept the licence.

# The coffee machine

The coffee machine on the third floor needs descaling every Friday. Use the white tablets
kept in the drawer under the sink.

# Parking

Visitors park in the blue zone behind the building.
"""


async def add_manual(h: KnowledgeHarness) -> str:
    answer = await h.command("kb add", attachments=(h.attach("manual.md", MANUAL.encode()),))
    assert answer.startswith("Added manual.md as "), answer
    return answer.split(" as ", 1)[1].split(":", 1)[0]


async def test_a_question_is_answered_with_the_passage_that_answers_it(
    harness: KnowledgeHarness,
) -> None:
    doc_id = await add_manual(harness)

    shown = await harness.say("How often does the coffee machine need descaling?")

    prompt = harness.last_prompt()
    block = prompt[-2]
    assert block["role"] == "system"
    assert "[1] manual.md #" in block["content"]
    first = block["content"].split("[1]", 1)[1].split("[2]", 1)[0]
    assert "descaling every Friday" in first  # the best passage comes first
    assert prompt[-1]["content"] == "Ana: How often does the coffee machine need descaling?"
    assert "Sources: [1] manual.md #" in shown
    assert len(doc_id) == 8


async def test_documents_are_listed_and_forgotten(harness: KnowledgeHarness) -> None:
    doc_id = await add_manual(harness)

    listing = await harness.command("kb list")
    assert f"{doc_id} manual.md: " in listing and "(answers from documents: on)" in listing

    assert await harness.command(f"kb forget {doc_id}") == f"Forgot manual.md ({doc_id})."
    assert "No documents in this chat yet" in await harness.command("kb")
    embeds_before = len(harness.ollama.embed_requests)
    shown = await harness.say("How often does the coffee machine need descaling?")
    assert len(harness.ollama.embed_requests) == embeds_before  # nothing to search
    assert "Sources" not in shown
    assert all("manual.md" not in m["content"] for m in harness.last_prompt())
    assert "There is no document" in await harness.command(f"kb forget {doc_id}")


async def test_the_same_document_twice_is_stored_once(harness: KnowledgeHarness) -> None:
    doc_id = await add_manual(harness)
    again = await harness.command(
        "kb add", attachments=(harness.attach("copy.md", MANUAL.encode()),)
    )
    assert again == f"manual.md is already here as {doc_id}."  # under the name it came with
    assert len(await harness.knowledge.documents("tg:-1001")) == 1


async def test_a_replied_message_becomes_a_source_named_by_its_link(
    harness: KnowledgeHarness,
) -> None:
    link = "https://t.me/c/1001/77"
    answer = await harness.command(
        "kb add", replied_text="The wifi password is on the fridge door.", replied_link=link
    )
    assert answer.startswith(f"Added {link} as ")

    shown = await harness.say("Where is the wifi password?")

    assert (
        f"[1] {link} #1:\nThe wifi password is on the fridge door."
        in harness.last_prompt()[-2]["content"]
    )
    assert f"Sources: [1] {link} #1" in shown


async def test_a_pdf_is_read_page_by_page(harness: KnowledgeHarness) -> None:
    pdf = pdf_with_pages(["Holidays are booked in the portal."], ["Expenses go to Marta."])
    answer = await harness.command(
        "kb add", attachments=(harness.attach("policy.pdf", pdf, "application/pdf"),)
    )
    assert answer.startswith("Added policy.pdf as ")

    await harness.say("Who handles expenses?")

    assert "Expenses go to Marta." in harness.last_prompt()[-2]["content"]


async def test_only_admins_change_a_groups_documents_but_anyone_their_private_chat(
    harness: KnowledgeHarness,
) -> None:
    file = harness.attach("notes.txt", b"Lunch is at one.")
    refused = await harness.command("kb add", attachments=(file,), admin=False)
    assert refused == "Sorry, only admins of this chat can change its settings."
    assert await harness.knowledge.documents("tg:-1001") == []
    audit = await harness.store.audit_log("tg:-1001", 5)
    assert [(e.field, e.outcome) for e in audit] == [("kb", "refused: not an admin")]

    private = await harness.command(
        "kb add", attachments=(file,), admin=False, group=False, channel="tg:42"
    )
    assert private.startswith("Added notes.txt as ")
    assert "notes.txt" in await harness.command("kb list", admin=False, channel="tg:42")


async def test_adding_and_forgetting_are_audited(harness: KnowledgeHarness) -> None:
    doc_id = await add_manual(harness)
    await harness.command(f"kb forget {doc_id}")

    audit = await harness.store.audit_log("tg:-1001", 5)

    assert [(e.field, e.old, e.new) for e in audit] == [
        ("kb", "", f"add {doc_id} manual.md"),
        ("kb", f"{doc_id} manual.md", ""),
    ]


async def test_kb_off_stops_answers_from_drawing_on_documents(harness: KnowledgeHarness) -> None:
    await add_manual(harness)
    assert "no longer" in await harness.command("kb off")
    embeds = len(harness.ollama.embed_requests)

    shown = await harness.say("How often does the coffee machine need descaling?")

    assert len(harness.ollama.embed_requests) == embeds
    assert "Sources" not in shown
    assert "(answers from documents: off)" in await harness.command("kb list")
    assert "now draw" in await harness.command("kb on")
    assert "Sources" in await harness.say("How often does the coffee machine need descaling?")


# -- bad input: one line, nothing stored, the conversation goes on ---------------------------


async def assert_nothing_stored_and_chat_goes_on(harness: KnowledgeHarness) -> None:
    assert await harness.knowledge.documents("tg:-1001") == []
    assert (await harness.say("hello")).startswith("echo: ")


async def test_an_oversized_file_is_refused_before_it_is_fetched(
    harness: KnowledgeHarness,
) -> None:
    big = harness.attach("big.txt", b"x", size=3 * 1024 * 1024)
    answer = await harness.command("kb add", attachments=(big,))
    assert answer == "big.txt is 3.0 MB; the limit is 20 KB. Please send a smaller file."
    assert harness.files.fetched == []
    await assert_nothing_stored_and_chat_goes_on(harness)


async def test_a_file_larger_than_it_said_is_refused(harness: KnowledgeHarness) -> None:
    sneaky = harness.attach("sneaky.txt", b"word " * 10_000, size=10)
    answer = await harness.command("kb add", attachments=(sneaky,))
    assert answer == "I could not read the file you sent; please try another one."
    await assert_nothing_stored_and_chat_goes_on(harness)


async def test_an_unsupported_type_is_refused(harness: KnowledgeHarness) -> None:
    docx = harness.attach("report.docx", b"PK\x03\x04", "application/vnd.openxmlformats")
    answer = await harness.command("kb add", attachments=(docx,))
    assert answer == "I can read text, Markdown and PDF files; report.docx is none of these."
    await assert_nothing_stored_and_chat_goes_on(harness)


async def test_a_corrupt_pdf_is_refused(harness: KnowledgeHarness) -> None:
    broken = pdf_with_pages(["Some text."])[:60]
    answer = await harness.command(
        "kb add", attachments=(harness.attach("broken.pdf", broken, "application/pdf"),)
    )
    assert answer == "broken.pdf is not a PDF I can read: it may be damaged or encrypted."
    await assert_nothing_stored_and_chat_goes_on(harness)


async def test_a_binary_file_named_text_is_refused(harness: KnowledgeHarness) -> None:
    answer = await harness.command(
        "kb add", attachments=(harness.attach("data.txt", b"\x00\x01\x02binary"),)
    )
    assert answer == "data.txt does not look like a text file."
    await assert_nothing_stored_and_chat_goes_on(harness)


async def test_a_photo_is_not_a_document(harness: KnowledgeHarness) -> None:
    from core.models import Attachment

    photo = Attachment("image", "p1", "cat.jpg", "image/jpeg", 1000)
    answer = await harness.command("kb add", attachments=(photo,))
    assert answer == "Only documents (text, Markdown, PDF) can be added, not photos or audio."
    await assert_nothing_stored_and_chat_goes_on(harness)


async def test_kb_add_with_nothing_to_add_says_how(harness: KnowledgeHarness) -> None:
    answer = await harness.command("kb add")
    assert answer == (
        "Send kb add as the caption of a text, Markdown or PDF file, or as a reply to a message."
    )


async def test_a_missing_embedding_model_is_one_line_and_nothing_is_stored(
    harness: KnowledgeHarness,
) -> None:
    harness.ollama.embed_models.clear()
    answer = await harness.command(
        "kb add", attachments=(harness.attach("manual.md", MANUAL.encode()),)
    )
    assert answer == (
        "The embedding model nomic-embed-text is not installed on the server, so I cannot read "
        "documents; an operator can install it with `ollama pull nomic-embed-text`."
    )
    await assert_nothing_stored_and_chat_goes_on(harness)


async def test_a_document_embedded_halfway_is_not_stored(harness: KnowledgeHarness) -> None:
    long_manual = "\n\n".join(f"Paragraph {i} about topic {i}. " * 8 for i in range(30))
    harness.ollama.embed_failing_after = 2  # the third batch of passages fails

    answer = await harness.command(
        "kb add", attachments=(harness.attach("long.md", long_manual.encode()),)
    )

    assert answer == "The model failed while answering; please try again."
    assert len(harness.ollama.embed_requests) == 3
    harness.ollama.embed_failing_after = None
    await assert_nothing_stored_and_chat_goes_on(harness)


async def test_a_question_when_the_embedding_model_went_missing_is_still_answered(
    harness: KnowledgeHarness,
) -> None:
    await add_manual(harness)
    harness.ollama.embed_models.clear()

    shown = await harness.say("How often does the coffee machine need descaling?")

    assert shown.startswith("echo: Ana: How often")
    assert shown.endswith(
        "(I could not search this chat's documents: The embedding model nomic-embed-text is not "
        "installed on the server, so I cannot read documents; an operator can install it with "
        "`ollama pull nomic-embed-text`.)"
    )


async def test_without_documents_enabled_kb_says_so_and_chat_is_unchanged(
    fake_ollama: FakeOllama,
) -> None:
    store = MemoryStore(block_ms=10)
    llm = OllamaLLM(fake_ollama.url, retries=0)
    services = build_services(store, llm, ChatConfig(default_model="llama3.1:8b"), "w")
    harness = KnowledgeHarness(services, store, MemoryKnowledge(), MemoryFiles(), fake_ollama)
    try:
        assert await harness.command("kb list") == "Documents are not enabled on this deployment."
        assert (await harness.say("hello")).startswith("echo: ")
        assert fake_ollama.embed_requests == []
    finally:
        await llm.close()
