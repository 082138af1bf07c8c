"""OCR reads every script the corpus has: scans in Latin, Cyrillic, CJK, Arabic and Korean.

Invariants protected here:
- image-only pages drawn in code in each script are read back word for word and are found first
  by their own words through the text-layout encoder;
- a page in a script the bundled RapidOCR model cannot read (lines found, none read) goes to
  Tesseract; where Tesseract is missing the page says so instead of silently holding less text;
- Tesseract's word table becomes lines and words with boxes inside each word, right to left for
  Arabic.

The drawn pages need DejaVu Sans (Latin, Cyrillic, Arabic) and WenQuanYi Micro Hei (CJK, Hangul),
and the reading needs tesseract-ocr with its rus, ara and kor packs: scripts/setup-tests.sh
installs them.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from vdr_app.models.text_layout import ocr, tesseract
from vdr_app.models.text_layout.reader import read_page_text
from vdr_app.types import PageImage

FONTS = {  # Debian package -> font file
    "fonts-dejavu-core": "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "fonts-wqy-microhei": "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
}
FONT_OF = {"latin": "fonts-dejavu-core", "cyrillic": "fonts-dejavu-core", "arabic": "fonts-dejavu-core",
           "cjk": "fonts-wqy-microhei", "korean": "fonts-wqy-microhei", "korean2": "fonts-wqy-microhei"}
# Two lines per page, different topics so each page is found by its own words.
PAGES = {
    "latin": ["Quarterly invoice summary", "Payment due within thirty days"],
    "cyrillic": ["Диагностическая карта автомобиля", "Тормозная система исправна"],
    "arabic": ["تقرير المبيعات السنوي", "الشركة الوطنية للكهرباء"],
    "cjk": ["海关行政处罚决定书", "进口钢管申报价值"],
    "korean": ["보험 계약자 보호 방안", "코로나 감염병 보장 현황"],
    # A second Hangul page: the search test must tell two pages of one script apart by their words.
    "korean2": ["국회 입법 조사처 발행", "재해 보험금 지급 문제"],
}
# The scripts the bundled RapidOCR model does not read: Tesseract's reading is kept.
TESSERACT_SCRIPTS = ("cyrillic", "arabic", "korean", "korean2")


def _font(script: str, size: int) -> ImageFont.FreeTypeFont:
    package = FONT_OF[script]
    path = Path(FONTS[package])
    if not path.is_file():
        pytest.fail(f"font {path} missing: apt install {package} (scripts/setup-tests.sh does)")
    return ImageFont.truetype(str(path), size)


def scan_page(script: str) -> PageImage:
    """An image-only PDF page (what a scanner gives) with PAGES[script] printed on it, rendered at
    the app's 120 dpi."""
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    from vdr_app.pdf import PdfLimits, render_pdf

    image = Image.new("RGB", (1275, 1650), "white")  # letter size at 150 dpi
    draw = ImageDraw.Draw(image)
    font = _font(script, 44)
    for i, line in enumerate(PAGES[script]):
        # direction="rtl" lays Arabic out right to left, letters joined (Pillow's raqm shaping).
        draw.text((120, 240 + 360 * i), line, font=font, fill="black",
                  direction="rtl" if script == "arabic" else None)
    buffer = io.BytesIO()
    c = canvas.Canvas(buffer, pagesize=(612, 792))
    c.drawImage(ImageReader(image), 0, 0, width=612, height=792)
    c.showPage()
    c.save()
    (page,) = render_pdf(buffer.getvalue(), f"{script}.pdf", PdfLimits(dpi=120))
    return page


def _require_tesseract():
    reason = tesseract.unavailable_reason()
    if reason is not None or not {"rus", "ara", "kor"} <= set(tesseract.languages()):
        pytest.fail(f"Tesseract with the rus, ara and kor packs is needed ({reason}): apt install tesseract-ocr "
                    "tesseract-ocr-rus tesseract-ocr-ara tesseract-ocr-kor (scripts/setup-tests.sh does)")


@pytest.fixture(scope="module")
def read_pages():
    _require_tesseract()
    pages = {script: scan_page(script) for script in PAGES}
    return pages, {script: read_page_text(page) for script, page in pages.items()}


@pytest.mark.parametrize("script", list(PAGES))
def test_every_word_of_an_image_only_page_is_read(read_pages, script):
    _, texts = read_pages
    text = texts[script]
    assert text.source == "ocr"
    found = "".join(text.text.split())  # CJK OCR may put spaces between characters
    for line in PAGES[script]:
        for word in line.split():
            assert word in found, f"{script}: {word!r} not read from {text.text!r}"
    # The reading kept is RapidOCR's for the scripts its bundled model reads, Tesseract's otherwise.
    engine = text.info["ocr_engine"]
    assert engine.startswith("tesseract:") == (script in TESSERACT_SCRIPTS), engine


@pytest.mark.parametrize("script", list(PAGES))
def test_words_sit_on_their_printed_line(read_pages, script):
    _, texts = read_pages
    text = texts[script]
    rows = {}
    for word in text.words():
        line = next(i for i, printed in enumerate(PAGES[script]) if word.text in "".join(printed.split()))
        rows.setdefault(line, []).append(float(word.box[1] + word.box[3]) / 2)
    # Lines printed at 240 and 600 of 1650 px (+ about half the 44 px font), i.e. 0.16 and 0.38.
    for line, centres in rows.items():
        expected = (240 + 360 * line + 26) / 1650
        assert all(abs(y - expected) < 0.03 for y in centres), (script, line, centres, expected)


def test_each_scan_is_found_first_by_its_own_words(read_pages):
    """A query in a page's script and words ranks that page first among the drawn scans (two of them in Hangul)."""
    from vdr_app.models.text_layout import load

    pages, _ = read_pages
    encoder = load(device="cpu", batch_size=4)
    scripts = list(PAGES)
    embeddings = encoder.encode_pages([pages[s] for s in scripts])
    queries = encoder.encode_queries([PAGES[s][1] for s in scripts])
    for i, query in enumerate(queries):
        scores = [float((query.vectors @ e.patches.T).max(axis=1).sum()) for e in embeddings]
        assert int(np.argmax(scores)) == i, (scripts[i], scores)


# -- the choice between the two engines, without either installed ------------------------------------


class FakeRapid:
    """Stands in for RapidOCR: returns the given lines, one box each."""

    def __init__(self, lines):
        self.lines = lines

    def __call__(self, image, return_word_box=True):
        from types import SimpleNamespace

        boxes = [np.array([[10, 10 + 30 * i], [200, 10 + 30 * i], [200, 30 + 30 * i], [10, 30 + 30 * i]])
                 for i in range(len(self.lines))]
        return SimpleNamespace(txts=tuple(self.lines), boxes=boxes, word_results=())


def test_unread_line_share():
    assert ocr.unread_line_share(()) == 1.0
    assert ocr.unread_line_share(("Total 12", "  /  :", "B")) == pytest.approx(1 / 3)


def test_unread_lines_without_tesseract_are_said_on_the_page(monkeypatch):
    # What rapidocr 3 returned for the Russian scan: punctuation and blanks where words were.
    monkeypatch.setattr(ocr, "_engine", lambda: FakeRapid(["  /  :        ( \"\").", "VIN:", ",  :", "2008"]))
    monkeypatch.setattr(tesseract, "unavailable_reason", lambda: "FileNotFoundError: tesseract")
    page = ocr.ocr_image(Image.new("RGB", (300, 200), "white"))
    assert page.info["ocr_engine"] == "rapidocr" and page.info["ocr_unread_lines"] == 0.5
    assert "could not be read" in page.info["ocr_unread_script"] and "tesseract" in page.info["ocr_unread_script"]


def test_tesseract_reading_is_kept_only_when_it_reads_more(monkeypatch):
    from vdr_app.models.text_layout.page_text import OCR, TextBuilder

    def fake_read(words):
        builder = TextBuilder()
        builder.add(words, (0.1, 0.1, 0.5, 0.2))
        page = builder.build(OCR)
        page.info["ocr_engine"] = "tesseract:rus+eng"
        return lambda image: page

    monkeypatch.setattr(tesseract, "unavailable_reason", lambda: None)
    monkeypatch.setattr(ocr, "_engine", lambda: FakeRapid([" :", "X", "  "]))
    monkeypatch.setattr(tesseract, "read", fake_read("Регистрационный"))
    page = ocr.ocr_image(Image.new("RGB", (300, 200), "white"))
    assert page.text == "Регистрационный" and page.info["ocr_engine"] == "tesseract:rus+eng"
    assert page.info["ocr_unread_lines"] == pytest.approx(2 / 3, abs=1e-3)
    monkeypatch.setattr(tesseract, "read", fake_read("a"))  # reads no more than RapidOCR did
    page = ocr.ocr_image(Image.new("RGB", (300, 200), "white"))
    assert page.info["ocr_engine"] == "rapidocr" and page.text.split() == [":", "X"]
    # A page RapidOCR reads (Latin, Chinese) never pays for a second reading.
    monkeypatch.setattr(ocr, "_engine", lambda: FakeRapid(["Payment due", "海关"]))
    monkeypatch.setattr(tesseract, "read", lambda image: pytest.fail("Tesseract ran on a readable page"))
    assert ocr.ocr_image(Image.new("RGB", (300, 200), "white")).info["ocr_engine"] == "rapidocr"


def test_tesseract_words_become_lines_with_boxes_inside_each_word():
    data = {  # two words on line 1, one Arabic word on line 2; a level row and a noise row
        "block_num": [1, 1, 1, 1, 1], "par_num": [1, 1, 1, 1, 1], "line_num": [1, 1, 1, 2, 2],
        "left": [0, 100, 300, 100, 0], "top": [0, 100, 100, 200, 0], "width": [0, 150, 100, 80, 5],
        "height": [0, 20, 20, 20, 5], "conf": [-1, 96, 91, 88, 5], "text": ["", "Срок", "до", "قرار", "|"],
    }
    page = tesseract.page_text_from_words(data, scale=2.0, size=(500, 500))  # read from a 1000 px image
    assert page.text == "Срок до\nقرار" and page.source == "ocr"
    words = page.words()
    np.testing.assert_allclose(words[0].box, [0.1, 0.1, 0.25, 0.12], atol=1e-6)
    np.testing.assert_allclose(words[1].box, [0.3, 0.1, 0.4, 0.12], atol=1e-6)
    arabic = page.char_boxes[page.text.index("قرار"):]
    assert arabic[0][0] > arabic[-1][0]  # the first letter sits at the right end
    np.testing.assert_allclose(words[2].box, [0.1, 0.2, 0.18, 0.22], atol=1e-6)


def test_korean_words_cut_into_syllables_by_the_word_table_are_joined_as_the_text_writes_them():
    # What Tesseract's word table gives for "코로나 감염병 현황" (its plain text of the same run
    # writes three words): a row per syllable, boxes touching; a noise row under the confidence floor.
    syllables = ["코", "로", "나", "감", "염", "병", "|", "현", "황"]
    lefts = [0, 40, 80, 150, 190, 230, 262, 300, 340]
    data = {"block_num": [1] * 9, "par_num": [1] * 9, "line_num": [1] * 9, "left": lefts, "top": [0] * 9,
            "width": [38] * 9, "height": [40] * 9, "conf": [95, 95, 95, 95, 95, 95, 5, 95, 95], "text": syllables}
    page = tesseract.page_text_from_words(data, scale=1.0, size=(400, 100), text="코로나 감염병 | 현황\n")
    assert page.text == "코로나 감염병 현황"
    assert [w.text for w in page.words()] == ["코로나", "감염병", "현황"]
    np.testing.assert_allclose(page.words()[0].box, [0.0, 0.0, 118 / 400, 0.4], atol=1e-6)
    # Without the text (or where it does not match) every row stays a word of its own.
    assert tesseract.page_text_from_words(data, 1.0, (400, 100)).text == "코 로 나 감 염 병 현 황"
    assert tesseract.page_text_from_words(data, 1.0, (400, 100), text="전혀 다른 글").text == "코 로 나 감 염 병 현 황"


def test_the_page_script_picks_the_packs():
    installed = ("rus", "ara", "kor", "eng")
    assert tesseract.packs_for("Cyrillic", installed) == ("rus", "eng")
    assert tesseract.packs_for("Arabic", installed) == ("ara", "eng")
    assert tesseract.packs_for("Hangul", installed) == ("kor", "eng")
    # OSD names most Korean print "Korean" (Hangul with Han characters): read with kor, not every pack.
    assert tesseract.packs_for("Korean", installed) == ("kor", "eng")
    # Unknown to OSD, or a script without an installed pack: every pack.
    assert tesseract.packs_for(None, installed) == installed
    assert tesseract.packs_for("Greek", installed) == installed
    assert tesseract.packs_for("Latin", installed) == installed


def test_tesseract_failing_keeps_rapidocr_reading(monkeypatch):
    def broken(image):
        raise RuntimeError("tesseract crashed")

    monkeypatch.setattr(ocr, "_engine", lambda: FakeRapid(["  :", "Total 12"]))
    monkeypatch.setattr(tesseract, "unavailable_reason", lambda: None)
    monkeypatch.setattr(tesseract, "read", broken)
    page = ocr.ocr_image(Image.new("RGB", (300, 200), "white"))
    assert page.info["ocr_engine"] == "rapidocr" and "Total 12" in page.text
    assert page.info["ocr_tesseract_error"] == "tesseract crashed"


# -- the corpus's Russian scan ---------------------------------------------------------------------

# Text-layer documents the scan competes with (English, French, German, Chinese, Korean, Arabic).
OTHER_PDFS = ["gao-national-cybersecurity-strategy.pdf", "ccc-salzburg-membership-form-de.pdf",
              "luxembourg-salary-certificate-160-2019-fr.pdf", "korean-insurance-covid-issue-brief-ko.pdf",
              "arabic-text-page-ar.pdf", "reliance-integrated-annual-report-2021-22-excerpt.pdf"]
# Words printed on each page of the scan (page 1: item 23 of the card; page 2: its title).
RUSSIAN_QUERIES = {1: "наличие стеклоочистителя и форсунки стеклоомывателя", 2: "результаты диагностирования"}


def test_russian_scan_is_found_first_by_its_russian_words(corpus_dir):
    """The issue's symptom: with rapidocr 3 alone, the Russian scan's words were not read and its
    pages were not found by them."""
    from vdr_app.models.text_layout import load
    from vdr_app.pdf import PdfLimits, render_pdf

    _require_tesseract()
    encoder = load(device="cpu", batch_size=4)
    scan = render_pdf((corpus_dir / "pdfs" / "vehicle-inspection-card-scan-ru.pdf").read_bytes(), "ru.pdf",
                      PdfLimits(dpi=120))
    others = [p for name in OTHER_PDFS
              for p in render_pdf((corpus_dir / "pdfs" / name).read_bytes(), name, PdfLimits(dpi=36))]
    embeddings = encoder.encode_pages(scan) + encoder.encode_pages(others)
    for page in embeddings[:2]:  # the encoder keeps the reading's info on the page
        assert page.info["text_source"] == "ocr" and page.info["ocr_engine"].startswith("tesseract:rus"), page.info
    for page_number, query in RUSSIAN_QUERIES.items():
        (q,) = encoder.encode_queries([query])
        scores = [float((q.vectors @ e.patches.T).max(axis=1).sum()) for e in embeddings]
        assert int(np.argmax(scores)) == page_number - 1, (query, scores[:2], max(scores[2:]))


def test_small_print_is_enlarged_large_print_is_not():
    small, large = Image.new("L", (1000, 1400), 255), Image.new("L", (1000, 1400), 255)
    ImageDraw.Draw(small).text((50, 50), "Тормозная система " * 4, font=_font("cyrillic", 8), fill=0)
    ImageDraw.Draw(large).text((50, 50), "Тормозная", font=_font("cyrillic", 60), fill=0)
    assert tesseract.upscale(small) == pytest.approx(2.0)  # 2800 px long side
    assert tesseract.upscale(large) < 1.1  # glyphs already ~45 px: no more than a few % larger
    assert tesseract.upscale(Image.new("L", (3000, 3000), 255)) == 1.0  # never shrunk
