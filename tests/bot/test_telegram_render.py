"""Reply -> Telegram HTML: escaping, the 4096/1024 limits, buttons (pure, no network)."""

from __future__ import annotations

import html

from hypothesis import given
from hypothesis import strategies as st

from bot.chat import Button, Reply
from bot.telegram_render import CAPTION_MAX, TEXT_MAX, render, tg_len
from tests.fakes.telegram_updates import visible_length

PNG = b"\x89PNG\r\n\x1a\nfake"


def plain(chunks: tuple[str, ...] | list[str]) -> list[str]:
    """The lines a person sees, chunks joined (tags dropped, entities decoded)."""
    text = "\n".join(chunks).replace("<b>", "").replace("</b>", "")
    return html.unescape(text).split("\n")


def test_title_is_bold_and_every_string_is_escaped() -> None:
    out = render(Reply(("a < b & c > d", "<script>x</script>"), title="<b>BTC</b> & co"))
    assert out.texts == (
        "<b>&lt;b&gt;BTC&lt;/b&gt; &amp; co</b>\na &lt; b &amp; c &gt; d\n"
        "&lt;script&gt;x&lt;/script&gt;",
    )
    assert visible_length(out.texts[0], "HTML")[1] is None
    assert out.photo is None and out.caption is None and out.markup is None


def test_long_text_splits_at_4096_on_line_boundaries() -> None:
    lines = tuple(f"{i:05d} " + "x" * 94 for i in range(130))  # 100 chars a line, 13k in all
    out = render(Reply(lines, title="Title"))
    assert len(out.texts) == 4
    assert all(tg_len(t) <= TEXT_MAX for t in out.texts)
    assert all(tg_len(t) > TEXT_MAX - 101 for t in out.texts[:-1])  # filled up to a line
    assert plain(out.texts) == ["Title", *lines]


def test_an_over_long_line_is_cut_but_never_inside_an_entity() -> None:
    line = "&<" * 3000  # 6000 characters, 27000 once escaped
    out = render(Reply((line,)))
    assert all(tg_len(t) <= TEXT_MAX for t in out.texts)
    assert "".join(html.unescape(t) for t in out.texts) == line
    assert all(visible_length(t, "HTML")[1] is None for t in out.texts)


def test_an_over_long_title_is_cut_into_bold_pieces() -> None:
    out = render(Reply(("body",), title="T" * 5000))
    assert all(t.count("<b>") == t.count("</b>") for t in out.texts)
    assert all(tg_len(t) <= TEXT_MAX for t in out.texts)
    assert plain(out.texts) == ["T" * (TEXT_MAX - 7), "T" * (5000 - TEXT_MAX + 7), "body"]


def test_emoji_count_as_two_utf16_units() -> None:
    out = render(Reply(("\U0001f680" * 3000,)))  # 3000 rockets: 6000 UTF-16 units
    assert len(out.texts) == 2
    assert all(tg_len(t) <= TEXT_MAX for t in out.texts)


def test_a_photo_caption_takes_whole_lines_up_to_1024_and_the_rest_follows() -> None:
    lines = tuple(f"line {i:03d} " + "&" * 40 for i in range(60))  # 209 characters escaped
    out = render(Reply(lines, title="BTC map", png=PNG, png_name="liqmap_btc.png"))
    assert out.photo == PNG and out.photo_name == "liqmap_btc.png"
    assert out.caption is not None and tg_len(out.caption) <= CAPTION_MAX
    assert out.caption.count("\n") == 4  # 14 + 4 x 210 = 854: a fifth line would not fit
    assert plain([out.caption, *out.texts]) == ["BTC map", *lines]
    assert out.count == 1 + len(out.texts)


def test_a_short_photo_reply_is_one_message() -> None:
    out = render(Reply(("Peak $451M",), title="BTC", png=PNG))
    assert out.caption == "<b>BTC</b>\nPeak $451M" and out.texts == ()


def test_a_caption_line_longer_than_a_caption_is_cut() -> None:
    out = render(Reply(("y" * 1500, "z"), png=PNG))
    assert out.caption == "y" * CAPTION_MAX
    assert out.texts == ("y" * (1500 - CAPTION_MAX) + "\nz",)


def test_buttons_carry_their_command_line_and_silent_mutes() -> None:
    buttons = ((Button("Remove #3", "/unalert 3"), Button("Mute 1h", "/mute 1h")),)
    out = render(Reply(("ok",), buttons=buttons, silent=True))
    assert out.markup is not None and out.silent
    (row,) = out.markup.inline_keyboard
    assert [(b.text, b.callback_data) for b in row] == [
        ("Remove #3", "/unalert 3"),
        ("Mute 1h", "/mute 1h"),
    ]


def test_an_empty_reply_sends_no_text() -> None:
    assert render(Reply(("", "  "))).texts == ()


@given(
    st.lists(
        st.text(st.characters(codec="utf-8", exclude_characters="\n\r"), max_size=1500),
        min_size=1,
        max_size=12,
    ),
    st.booleans(),
)
def test_chunks_fit_and_lose_nothing_but_blank_space(lines: list[str], photo: bool) -> None:
    out = render(Reply(tuple(lines), title="T", png=PNG if photo else None))
    chunks = ([out.caption] if out.caption else []) + list(out.texts)
    assert all(tg_len(t) <= TEXT_MAX for t in out.texts)
    assert out.caption is None or tg_len(out.caption) <= CAPTION_MAX
    assert all(visible_length(c, "HTML")[1] is None for c in chunks)
    shown = "".join(plain(chunks))
    assert "".join(shown.split()) == "".join("".join(["T", *lines]).split())
