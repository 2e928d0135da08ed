"""The one sanitizer for pipeline text: formatting stays, anything that could run goes."""

from __future__ import annotations

import pytest

from mlopen.web.sanitize import clean_pipeline_html, format_pipeline_text


@pytest.mark.parametrize(
    "html",
    [
        "<b>bold</b> <i>i</i> <em>e</em> <strong>s</strong> <u>u</u> x<sup>2</sup> x<sub>i</sub>",
        "<p>para</p><div>block</div><span>inline</span><br><hr>",
        "<h1>1</h1><h2>2</h2><h3>3</h3><h4>4</h4><h5>5</h5><h6>6</h6>",
        "<ul><li>a</li></ul><ol><li>b</li></ol>",
        "<table><thead><tr><th>h</th></tr></thead><tbody><tr><td>c</td></tr></tbody></table>",
        "<pre><code>x = 1</code></pre><blockquote>q</blockquote>",
    ],
)
def test_formatting_tags_are_kept(html):
    assert clean_pipeline_html(html) == html


def test_links_keep_web_and_mail_addresses_only():
    assert clean_pipeline_html('<a href="https://example.org/x">x</a>') == (
        '<a href="https://example.org/x" rel="noopener noreferrer nofollow">x</a>'
    )
    assert 'href="mailto:a@example.org"' in clean_pipeline_html('<a href="mailto:a@example.org">m</a>')
    for url in (
        "javascript:alert(1)",
        " JavaScript:alert(1)",
        "data:text/html,<script>x</script>",
        "/admin/",
        "vbscript:x",
    ):
        assert "href" not in clean_pipeline_html(f'<a href="{url}">x</a>'), url


def test_images_keep_inline_data_images_and_web_addresses_only():
    assert clean_pipeline_html('<img src="data:image/png;base64,iVBORw0K" alt="plot">') == (
        '<img src="data:image/png;base64,iVBORw0K" alt="plot">'
    )
    assert clean_pipeline_html('<img src="https://example.org/a.png">') == '<img src="https://example.org/a.png">'
    assert clean_pipeline_html('<img src="data:text/html;base64,PHNjcmlwdD4=">') == "<img>"
    assert clean_pipeline_html('<img src="javascript:alert(1)">') == "<img>"


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<b>hi</b><script>alert(1)</script>", "<b>hi</b>"),
        ("<style>body{display:none}</style>text", "text"),
        ('<img src="x.png" onerror="alert(1)">', "<img>"),
        ('<div onclick="alert(1)" onmouseover="x()" style="position:fixed">d</div>', "<div>d</div>"),
        ('<svg><script>alert(1)</script><circle onload="x()"/></svg>after', "after"),
        ('<form action="https://evil"><input name="p"><button>go</button></form>f', "f"),
        ('<iframe src="https://evil">inside</iframe>', ""),
        ('<object data="x.swf"></object><embed src="y">', ""),
        ("<math><mi>x</mi></math>ok", "ok"),
        (
            '<a href="https://ok.org" target="_top" onclick="x()">l</a>',
            '<a href="https://ok.org" rel="noopener noreferrer nofollow">l</a>',
        ),
        ("<!-- secret --><b>c</b>", "<b>c</b>"),
    ],
)
def test_script_and_active_content_are_dropped(html, expected):
    assert clean_pipeline_html(html) == expected


def test_plain_text_is_escaped_with_line_breaks_kept():
    assert format_pipeline_text("accuracy: 0.9\nf1 < 1 & more\n\nnext") == (
        "<p>accuracy: 0.9<br>f1 &lt; 1 &amp; more</p>\n\n<p>next</p>"
    )


def test_markup_text_goes_through_the_sanitizer():
    assert format_pipeline_text("<b>x</b><script>y</script>") == "<b>x</b>"
    assert format_pipeline_text(None) == "" and format_pipeline_text("") == ""
