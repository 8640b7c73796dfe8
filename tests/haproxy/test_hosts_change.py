"""A host dies, comes back, is added: only the conversations that hash to it move."""

from __future__ import annotations

import subprocess
from collections import Counter

from tests.fixtures.haproxy import SHIPPED, Host
from tests.haproxy.conftest import Farm, MakeFarm, affinity, reply, turn

CONVERSATIONS = [f"tg:{n}" for n in range(60)]


async def placement(farm: Farm, llm: object) -> dict[str, str]:
    """Send one turn of every conversation; which host answered each."""
    marks = farm.counts()
    for conversation in CONVERSATIONS:
        assert await reply(llm, turn(conversation, 1)) == "echo: go on"  # type: ignore[arg-type]
    served = farm.served_since(marks)
    return {c: served[affinity(c)] for c in CONVERSATIONS}


def moved(before: dict[str, str], after: dict[str, str]) -> dict[str, tuple[str, str]]:
    return {c: (before[c], after[c]) for c in before if before[c] != after[c]}


async def test_a_host_dying_moves_only_its_conversations_and_they_return_with_it(
    make_farm: MakeFarm,
) -> None:
    farm = await make_farm(running=3, spare=1)
    proxy = await farm.proxy()
    llm = farm.client(proxy)
    first = await placement(farm, llm)
    assert set(first.values()) == {"gpu1", "gpu2", "gpu3"}, "gpu4 is not running yet"

    await farm.stop_host(1)  # gpu2 dies; HAProxy has not noticed yet
    after_death = await placement(farm, llm)
    on_gpu2 = {c for c, host in first.items() if host == "gpu2"}
    assert moved(first, after_death).keys() == on_gpu2, "only gpu2's conversations moved"
    assert "gpu2" not in after_death.values()

    await farm.start_host(1)
    await proxy.wait_for_states({"gpu2": "UP"})
    back = await placement(farm, llm)
    assert back == first, "gpu2's conversations went back to it; nothing else moved"

    await farm.start_host(3)  # a fourth host is added
    await proxy.wait_for_states({"gpu4": "UP"})
    grown = await placement(farm, llm)
    joined = moved(first, grown)
    assert {new for _, new in joined.values()} == {"gpu4"}, "moves only onto the new host"
    assert 0 < len(joined) <= len(CONVERSATIONS) * 0.4
    print(
        f"\n{len(CONVERSATIONS)} conversations on 3 hosts {dict(Counter(first.values()))}: "
        f"gpu2 died, {len(moved(first, after_death))} moved (all of gpu2's {len(on_gpu2)}, "
        f"none of the others); gpu2 back, {len(moved(after_death, back))} returned; "
        f"gpu4 added, {len(joined)} moved, all to gpu4"
    )


async def test_every_sidecar_sends_a_conversation_to_the_same_host(make_farm: MakeFarm) -> None:
    farm = await make_farm(running=3)
    here = await placement(farm, farm.client(await farm.proxy()))
    renamed = [Host(f"ollama-{h.server_id}", h.port, h.server_id) for h in reversed(farm.hosts)]
    there = await placement(farm, farm.client(await farm.proxy(hosts=renamed)))
    assert there == here, "listed in another order under other names, the same ids agree"


def test_the_shipped_file_is_accepted_by_haproxy_as_it_is() -> None:
    checked = subprocess.run(
        ["haproxy", "-c", "-f", str(SHIPPED)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
