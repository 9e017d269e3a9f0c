"""Reply -> Discord messages: limits, splitting on lines, escaping, attachments, buttons."""

from __future__ import annotations

from bot.chat import Button, Reply
from bot.discord_render import DESCRIPTION_MAX, escape, render

PNG = b"\x89PNG\r\n\x1a\n" + bytes(16)


def test_title_lines_and_png_make_one_embed_with_an_attachment() -> None:
    [msg] = render(Reply(("a", "b"), title="BTC map", png=PNG, png_name="liqmap_btc.png"))
    [embed] = msg.embeds
    assert (embed.title, embed.description) == ("BTC map", "a\nb")
    assert embed.image.url == "attachment://liqmap_btc.png"
    assert msg.file is not None and msg.file.filename == "liqmap_btc.png"
    assert msg.file.fp.read() == PNG
    assert (msg.view, msg.ephemeral, msg.silent) == (None, False, False)


def test_a_png_alone_still_makes_an_embed() -> None:
    [msg] = render(Reply((), png=PNG))
    assert msg.embeds[0].description is None and msg.embeds[0].image.url is not None


def test_errors_and_private_replies_are_ephemeral_silent_is_kept() -> None:
    assert render(Reply.of("bad input", error=True))[0].ephemeral
    assert render(Reply.of("just you", private=True))[0].ephemeral
    assert render(Reply.of("shh", silent=True))[0].silent


def test_long_bodies_split_on_lines_into_embeds_and_messages() -> None:
    lines = tuple(f"{i:05d} " + "x" * 94 for i in range(150))  # 150 lines of 100 characters
    messages = render(Reply(lines, title="T"))
    embeds = [e for m in messages for e in m.embeds]
    assert all(len(e.description or "") <= DESCRIPTION_MAX for e in embeds)
    assert all(sum(len(e.description or "") for e in m.embeds) <= 6000 for m in messages)
    assert [e.title for e in embeds] == ["T"] + [None] * (len(embeds) - 1)
    rejoined = "\n".join(e.description or "" for e in embeds)
    assert rejoined.split("\n") == list(lines)  # nothing lost, nothing cut mid-line
    assert len(messages) == 3


def test_an_overlong_line_is_cut_between_escapes() -> None:
    line = "*" * 3000  # 6000 characters once escaped
    embeds = [e for m in render(Reply((line,))) for e in m.embeds]
    pieces = [e.description or "" for e in embeds]
    assert all(len(d) <= DESCRIPTION_MAX and not d.endswith("\\\\\\") for d in pieces)
    assert "".join(pieces) == escape(line)


def test_markdown_and_mentions_are_escaped() -> None:
    assert escape("**a** _b_ `c` ~~d~~ ||e||") == (
        "\\*\\*a\\*\\* \\_b\\_ \\`c\\` \\~\\~d\\~\\~ \\|\\|e\\|\\|"
    )
    assert escape("> quote\n# heading") == "\\> quote\n\\# heading"
    assert escape("@everyone @here <@123456789012345678>") == (
        "@\u200beveryone @\u200bhere <@\u200b123456789012345678>"
    )


async def test_buttons_go_on_the_last_message_as_command_lines() -> None:
    row1 = tuple(Button(f"B{i}", f"/liqmap BTC {i}%") for i in range(7))
    row2 = (Button("again", "/liqmap BTC 0%"), Button("ETF", "/etf"))
    lines = tuple("y" * 100 for _ in range(100))
    messages = render(Reply(lines, buttons=(row1, row2)))
    assert all(m.view is None for m in messages[:-1])
    view = messages[-1].view
    assert view is not None and view.is_finished()  # never held in discord.py's view store
    rows = view.to_components()
    ids = [[c["custom_id"] for c in row["components"]] for row in rows]
    assert ids == [
        [f"/liqmap BTC {i}%" for i in range(5)],
        ["/liqmap BTC 5%", "/liqmap BTC 6%"],
        ["/etf"],  # the duplicate custom_id is dropped
    ]
