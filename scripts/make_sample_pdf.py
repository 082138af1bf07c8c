"""Write assets/sample.pdf: a small 3-page report (text, a bar chart, a table) to try the app on.

    python scripts/make_sample_pdf.py [OUT]

Uses reportlab's built-in Helvetica (no embedded fonts), so the file stays a few KB.
"""

from __future__ import annotations

import sys
from pathlib import Path

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

WIDTH, HEIGHT = A4
REGIONS = [("North", 42, 51), ("South", 35, 38), ("East", 28, 40), ("West", 36, 55)]


def _title(c: canvas.Canvas, text: str, sub: str) -> None:
    c.setFillColor(colors.HexColor("#312e81"))
    c.rect(0, HEIGHT - 90, WIDTH, 90, stroke=0, fill=1)
    c.setFillColor(colors.white)
    c.setFont("Helvetica-Bold", 24)
    c.drawString(50, HEIGHT - 52, text)
    c.setFont("Helvetica", 12)
    c.drawString(50, HEIGHT - 74, sub)
    c.setFillColor(colors.black)


def _paragraph(c: canvas.Canvas, y: float, lines: list[str], size: int = 12) -> float:
    c.setFont("Helvetica", size)
    for line in lines:
        c.drawString(50, y, line)
        y -= size * 1.5
    return y


def page_summary(c: canvas.Canvas) -> None:
    _title(c, "Northwind Solar - Annual Report 2024", "Summary of operations")
    y = _paragraph(c, HEIGHT - 140, [
        "Northwind Solar installed 412 MW of new photovoltaic capacity in 2024,",
        "up 18 percent on the previous year. Revenue grew to 152 million euros.",
        "",
        "Highlights",
        "- The West region overtook the North as the largest market.",
        "- Battery storage sales doubled; 61 sites now pair panels with batteries.",
        "- Employee safety: zero lost-time incidents for the second year running.",
    ])
    c.setFillColor(colors.HexColor("#fef3c7"))
    c.roundRect(50, y - 120, WIDTH - 100, 100, 8, stroke=0, fill=1)
    c.setFillColor(colors.black)
    c.setFont("Helvetica-Bold", 14)
    c.drawString(70, y - 50, "Outlook 2025")
    c.setFont("Helvetica", 12)
    c.drawString(70, y - 72, "We expect 480 MW of installations and a first offshore pilot.")


def page_chart(c: canvas.Canvas) -> None:
    _title(c, "Revenue by region", "Million euros, 2023 versus 2024")
    base_x, base_y, scale = 90, 300, 7.0
    c.setStrokeColor(colors.black)
    c.line(base_x - 10, base_y, WIDTH - 60, base_y)
    c.line(base_x - 10, base_y, base_x - 10, base_y + 400)
    for i, (name, before, after) in enumerate(REGIONS):
        x = base_x + i * 115
        c.setFillColor(colors.HexColor("#a5b4fc"))
        c.rect(x, base_y, 38, before * scale, stroke=0, fill=1)
        c.setFillColor(colors.HexColor("#dc2626"))
        c.rect(x + 42, base_y, 38, after * scale, stroke=0, fill=1)
        c.setFillColor(colors.black)
        c.setFont("Helvetica", 12)
        c.drawCentredString(x + 40, base_y - 20, name)
        c.drawCentredString(x + 61, base_y + after * scale + 6, str(after))
    c.setFont("Helvetica", 11)
    c.drawString(90, 230, "Light bars: 2023. Red bars: 2024. The West region grew fastest.")


def page_table(c: canvas.Canvas) -> None:
    _title(c, "Installations by quarter", "Megawatts installed")
    rows = [("Quarter", "North", "South", "East", "West", "Total"),
            ("Q1", "21", "18", "14", "25", "78"), ("Q2", "30", "22", "19", "33", "104"),
            ("Q3", "29", "24", "21", "36", "110"), ("Q4", "28", "25", "24", "43", "120")]
    top, left, col_w, row_h = HEIGHT - 150, 60, 80, 30
    for r, row in enumerate(rows):
        y = top - r * row_h
        if r == 0:
            c.setFillColor(colors.HexColor("#e0e7ff"))
            c.rect(left, y - 8, col_w * len(row), row_h, stroke=0, fill=1)
            c.setFillColor(colors.black)
        c.setFont("Helvetica-Bold" if r == 0 else "Helvetica", 12)
        for j, cell in enumerate(row):
            c.drawString(left + 10 + j * col_w, y, cell)
    c.setFont("Helvetica", 12)
    _paragraph(c, top - len(rows) * row_h - 40, [
        "The fourth quarter was the strongest, driven by the West region's",
        "utility-scale projects and an early winter order book.",
    ])


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else Path(__file__).resolve().parents[1] / "assets" / "sample.pdf"
    c = canvas.Canvas(str(out), pagesize=A4, invariant=1)  # invariant: same bytes on every run
    c.setTitle("Northwind Solar - Annual Report 2024 (sample)")
    for draw in (page_summary, page_chart, page_table):
        draw(c)
        c.showPage()
    c.save()
    print(f"wrote {out} ({out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
