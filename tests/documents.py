"""PDFs made in code for the tests a fresh clone runs: the real corpus (../shared/corpus) is for
evaluation only and is not redistributed with the repo.

`write_sample_documents(folder)` lays them out like the corpus, `pdfs/` and `bad/`:

| file | what it is |
| --- | --- |
| pdfs/report.pdf | 2 A4 pages with a text layer: headings and paragraphs; a ruled table on page 2 |
| pdfs/newsletter.pdf | 1 letter page: text and coloured blocks |
| pdfs/scan.pdf | 3 pages that are only pictures of typed text (no text layer): what OCR is for |
| bad/encrypted.pdf | a user password is needed to open it |
| bad/broken-xref.pdf | the cross-reference table points into the middle of objects, the catalog is gone |
| bad/no-pages.pdf | a catalog whose page tree is empty |
| bad/not-a-pdf.pdf | a text file with a .pdf name |
"""

from __future__ import annotations

import io
import re
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

REPORT_PAGES = [
    ["Annual report 2025", "Revenue by region grew in the northern offices.",
     "Solar panels and wind turbines supplied most of the energy.",
     "The board approved a new policy on remote work."],
    ["Table 2: employees per office", "Office      Staff    Budget",
     "Oslo        120      4.2 million", "Lisbon      85       2.9 million",
     "Nairobi     64       1.7 million"],
]
NEWSLETTER_LINES = ["Dragon dispatch newsletter", "Volunteers cleaned the river banks on Saturday.",
                    "The library opens a maker space with laser cutters."]
SCAN_PAGES = [
    ["THE HARBOUR TRADING COMPANY", "Invoice number 4471 for steel pipes", "Delivered to the northern warehouse"],
    ["Minutes of the safety meeting", "Fire drills will happen every month", "Helmets must be worn on site"],
    ["Customs penalty decision", "The importer declared the wrong value", "A fine of nine hundred euros"],
]


def write_sample_documents(folder: Path) -> Path:
    """Write every sample document under folder/pdfs and folder/bad; returns folder."""
    pdfs, bad = folder / "pdfs", folder / "bad"
    pdfs.mkdir(parents=True, exist_ok=True)
    bad.mkdir(parents=True, exist_ok=True)
    (pdfs / "report.pdf").write_bytes(report_pdf())
    (pdfs / "newsletter.pdf").write_bytes(newsletter_pdf())
    (pdfs / "scan.pdf").write_bytes(scanned_pdf(SCAN_PAGES))
    (bad / "encrypted.pdf").write_bytes(encrypted_pdf())
    (bad / "broken-xref.pdf").write_bytes(broken_xref_pdf())
    (bad / "no-pages.pdf").write_bytes(no_pages_pdf())
    (bad / "not-a-pdf.pdf").write_bytes(b"Meeting notes\nThis is a plain text file, not a PDF.\n")
    return folder


def _canvas(buffer, size, **kw):
    from reportlab.pdfgen import canvas

    return canvas.Canvas(buffer, pagesize=size, **kw)


def report_pdf() -> bytes:
    buffer = io.BytesIO()
    width, height = 595, 842
    c = _canvas(buffer, (width, height))
    for page, lines in enumerate(REPORT_PAGES):
        c.setFont("Helvetica-Bold", 20)
        c.drawString(60, height - 80, lines[0])
        c.setFont("Courier" if page == 1 else "Helvetica", 13)
        for i, line in enumerate(lines[1:]):
            c.drawString(60, height - 130 - 26 * i, line)
        if page == 1:  # the ruled table under the text
            top, rows = height - 112, len(lines)
            for r in range(rows):
                c.line(55, top - 26 * r, 400, top - 26 * r)
            for x in (55, 148, 218, 400):
                c.line(x, top, x, top - 26 * (rows - 1))
        c.showPage()
    c.save()
    return buffer.getvalue()


def newsletter_pdf() -> bytes:
    buffer = io.BytesIO()
    width, height = 612, 792
    c = _canvas(buffer, (width, height))
    c.setFillColorRGB(0.8, 0.1, 0.1)
    c.rect(40, height - 120, width - 80, 70, stroke=0, fill=1)
    c.setFillColorRGB(1, 1, 1)
    c.setFont("Helvetica-Bold", 24)
    c.drawString(60, height - 95, NEWSLETTER_LINES[0])
    c.setFillColorRGB(0, 0, 0)
    c.setFont("Helvetica", 14)
    for i, line in enumerate(NEWSLETTER_LINES[1:]):
        c.drawString(60, height - 170 - 24 * i, line)
    c.setFillColorRGB(0.1, 0.3, 0.8)
    c.rect(60, 150, 200, 200, stroke=0, fill=1)
    c.showPage()
    c.save()
    return buffer.getvalue()


def typed_page_image(lines: list[str], size=(1240, 1754), font_size=44) -> Image.Image:
    """A white page with black typed lines, as a scanner would give it (no text layer)."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=font_size)
    for i, line in enumerate(lines):
        draw.text((110, 160 + int(font_size * 2.2) * i), line, fill="black", font=font)
    return image


def scanned_pdf(pages: list[list[str]]) -> bytes:
    """Each page only a picture of typed text: OCR is the one way to read it."""
    from reportlab.lib.utils import ImageReader

    buffer = io.BytesIO()
    width, height = 595, 842
    c = _canvas(buffer, (width, height))
    for lines in pages:
        c.drawImage(ImageReader(typed_page_image(lines)), 0, 0, width, height)
        c.showPage()
    c.save()
    return buffer.getvalue()


def encrypted_pdf() -> bytes:
    from reportlab.lib import pdfencrypt

    buffer = io.BytesIO()
    c = _canvas(buffer, (595, 842), encrypt=pdfencrypt.StandardEncryption("user-secret", ownerPassword="owner"))
    c.drawString(72, 700, "confidential")
    c.showPage()
    c.save()
    return buffer.getvalue()


def broken_xref_pdf() -> bytes:
    """A real PDF whose xref offsets all point 7 bytes too far and whose catalog object header is
    wrecked, so that poppler's reconstruction fails too (as with the corpus's broken-xref file)."""
    data = report_pdf()
    xref = data.index(b"\nxref\n") + 1
    head, tail = data[:xref], data[xref:]
    tail = re.sub(rb"(\d{10}) 00000 n", lambda m: b"%010d 00000 n" % (int(m.group(1)) + 7), tail)
    catalog = head.rfind(b" obj", 0, head.index(b"/Type /Catalog"))
    return head[:catalog] + b" xbj" + head[catalog + 4:] + tail


def no_pages_pdf() -> bytes:
    """A well-formed PDF whose page tree has no kids."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>"]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (number, body))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()
