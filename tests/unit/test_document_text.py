"""Reading documents: which kinds, which encodings, and which files are refused."""

from __future__ import annotations

import io

import pypdf
import pytest

from adapters.document_text import DocumentText, kind_of
from core.errors import FileRefused
from tests.knowledge.pdf import pdf_with_pages


@pytest.mark.parametrize(
    ("name", "mime", "kind"),
    [
        ("notes.md", "", "text"),
        ("NOTES.TXT", "", "text"),
        ("upload", "text/plain; charset=utf-8", "text"),
        ("scan", "application/pdf", "pdf"),
        ("report.PDF", "application/octet-stream", "pdf"),
        ("report.docx", "application/vnd.openxmlformats", ""),
        ("photo.jpg", "image/jpeg", ""),
    ],
)
def test_the_kind_comes_from_the_type_or_else_the_name(name: str, mime: str, kind: str) -> None:
    assert kind_of(name, mime) == kind


async def test_text_in_utf8_with_a_bom_or_in_windows_1252() -> None:
    reader = DocumentText()
    assert await reader.text("\ufeffCañón".encode(), "a.txt", "") == "Cañón"
    assert await reader.text("Cañón".encode("cp1252"), "b.txt", "") == "Cañón"


async def test_an_encrypted_pdf_is_refused() -> None:
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(pdf_with_pages(["secret"]))))
    writer.encrypt("pw", algorithm="RC4-128")
    data = io.BytesIO()
    writer.write(data)
    with pytest.raises(FileRefused) as refused:
        await DocumentText().text(data.getvalue(), "locked.pdf", "application/pdf")
    assert (
        refused.value.notice
        == "locked.pdf is not a PDF I can read: it may be damaged or encrypted."
    )
