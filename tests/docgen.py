"""Test documents shaped like the papers maintainers add: one made-up trial report, three formats.

`paper_pdf()` lays it out the way journals do (reportlab): a full-width title block (authors, affiliation, correspondence) and abstract,
then two columns, a running header and footer on every page (journal line, DOI, page number), a
word hyphenated across a line break, a small table inside a column, back matter and a numbered
reference list. `order="rows"` writes each page's lines in the order a top-to-bottom scan meets
them (left and right column interleaved, header and footer last), as some PDF producers do, so
reading order cannot come from the content stream. `paper_txt()` is the same report hard-wrapped
at 60 characters with form-feed page breaks and the running header repeated after each, and
`paper_html()` the same report as a web page.

The trial (ORCHID-2) and everything in it is invented for the tests; it is not evidence.
"""

from __future__ import annotations

import html
import re
import textwrap

TITLE = "Intranasal ketamine for treatment-resistant depression: the ORCHID-2 trial"
AUTHORS = ["Ada Marlow", "Ben Quint", "Carla Ferreira"]
AFFILIATION = "Department of Psychiatry, Imaginary University, Springfield"
CORRESPONDENCE = "Correspondence: ada.marlow@example.org"
HEADER = "Journal of Imaginary Psychiatry · Vol 12 · 2026"
DOI = "doi:10.5555/jip.2026.0142"
# A word split across a line as "psilo-" / "cybin": the joined word must come back.
HYPHENATED = ("psilocybin", 5)

# (heading, paragraphs); a paragraph that is a list of rows is a table, the first row its header.
BODY: list[tuple[str, list]] = [
    ("Introduction", [
        "Treatment-resistant depression is usually defined as a depressive episode that has not "
        "improved after at least two adequate courses of antidepressant medication. Ketamine, an "
        "NMDA receptor antagonist, has rapid antidepressant effects when it is given by infusion. "
        "Unlike psilocybin, which is given in a few long supervised sessions, ketamine can be "
        "given as a short intranasal dose in an outpatient clinic.",
        "The ORCHID-2 trial asked whether a twice-weekly intranasal schedule of ketamine is "
        "effective and tolerable in adults whose depression had not responded to standard care.",
    ]),
    ("Methods", [
        "The ORCHID-2 trial was a double-blind, placebo-controlled trial run at six outpatient "
        "clinics. Adults aged 18 to 65 years with treatment-resistant depression were randomised "
        "to intranasal ketamine or a saline placebo spray twice weekly for four weeks.",
        "Women who were pregnant or breastfeeding were excluded, and the safety of norketamine "
        "during lactation was not studied. Blood pressure was measured before and after every "
        "dose, but the effect of ketamine in people with uncontrolled hypertension was not "
        "assessed.",
        "The primary outcome was the change in the MADRS total score from baseline to week "
        "four. Table 1 shows the baseline characteristics of the two groups.",
        [["Table 1", "Ketamine", "Placebo"],
         ["Participants", "108", "106"],
         ["Mean age, years", "41.8", "43.2"],
         ["Women", "57%", "60%"],
         ["MADRS at baseline", "33.9", "34.1"]],
    ]),
    ("Results", [
        "At week four the MADRS total score had fallen by 14.2 points with ketamine and by 6.1 "
        "points with placebo, a difference of 8.1 points in favour of ketamine. Response, "
        "defined as a fall of at least half in the MADRS score, was seen in 41% of the ketamine "
        "group and in 17% of the placebo group.",
        "The benefit was visible from the first week of treatment and persisted to the end of the "
        "four-week treatment period. Remission rates were not reported because the trial was too "
        "short to measure them reliably.",
    ]),
    ("Safety", [
        "Dissociation was the most common adverse event of the ORCHID-2 trial and was reported by "
        "23% of participants on ketamine and by 4% on placebo. Dissociative symptoms began within "
        "20 minutes of a dose and had resolved within two hours in every participant.",
        "Systolic blood pressure rose by a mean of 9 mmHg after dosing with ketamine. No "
        "participant needed treatment for raised blood pressure, and nobody left the trial "
        "because of an adverse event.",
    ]),
    ("Discussion", [
        "The ORCHID-2 trial supports intranasal ketamine as a short-term treatment for adults with "
        "treatment-resistant depression. The trial lasted only four weeks, so the durability of "
        "the benefit beyond the treatment period remains unknown.",
        "Clinics that offer intranasal ketamine need a quiet room where patients can be observed "
        "until dissociation has passed, and a way to measure blood pressure after every dose. "
        "Longer trials that compare ketamine with an active treatment are needed before it can "
        "be recommended over established options.",
    ]),
    ("Limitations", [
        "Participants and clinicians may have guessed the treatment from the dissociation it "
        "causes, which could have inflated the difference between the groups. The saline spray "
        "had no taste or effect of its own, so it did not mask the experience of a ketamine dose.",
        "People with psychotic disorders, recent substance use disorders or cardiovascular "
        "disease were excluded, so the results of the ORCHID-2 trial apply only to adults "
        "without those conditions. Most participants were recruited from specialist clinics "
        "and had already tried several treatments.",
        "The trial measured depressive symptoms with the MADRS at weekly visits only. Changes in "
        "suicidal thoughts between visits were not recorded, and no conclusion about suicide "
        "risk can be drawn from the ORCHID-2 trial.",
    ]),
    ("Implications for practice", [
        "Clinicians who consider intranasal ketamine for treatment-resistant depression should "
        "screen for uncontrolled hypertension, psychosis and substance misuse before the first "
        "dose. Patients should not drive on the day of a dose and should be accompanied home.",
        "A four-week course can be offered while its longer-term effects are studied, with a "
        "review of benefit and side effects at the end of the course.",
    ]),
]
BACK_MATTER: list[tuple[str, list[str]]] = [
    ("Acknowledgements", ["We thank the participants and the staff of the six trial clinics for "
                          "their time and care."]),
    ("Funding", ["The trial was funded by the Imaginary Mental Health Foundation under grant "
                 "IMHF-2024-17, which had no role in its design or analysis."]),
    ("Conflicts of interest", ["Ada Marlow has received consulting fees from Example Pharma. The "
                               "other authors declare that they have no competing interests."]),
]
REFERENCES = [
    "Author A, Author B. A study of ketamine and depression. J Imag Psychiatry. 2019;4:12-19.",
    "Smith C, Jones D. Intranasal ketamine dosing in treatment-resistant depression: a review. "
    "Imag Rev Psychiatry. 2021;9:101-115.",
    "Lee E, Patel R. Dissociation after ketamine in outpatient clinics: a cohort study. "
    "J Imag Pharmacol. 2022;3:44-50.",
    "Brown F, Green G. Psilocybin sessions for depression: what the trials measured. "
    "Imag Clin Trials. 2023;7:201-210.",
]
ABSTRACT = (
    "Background: Many adults with depression do not improve after two or more antidepressants. "
    "Methods: The ORCHID-2 trial randomised 214 adults with treatment-resistant depression to "
    "intranasal ketamine or a saline placebo spray twice weekly for four weeks. Results: At week "
    "four the MADRS total score had fallen by 14.2 points with ketamine and by 6.1 points with "
    "placebo. Dissociation was reported by 23% of participants in the ketamine group and by 4% in "
    "the placebo group. Conclusions: Intranasal ketamine reduced depressive symptoms more than "
    "placebo over four weeks, at the cost of frequent but short-lived dissociation."
)

# Questions through Assistant.ask, each with a figure or phrase its answer must show.
QUESTIONS: list[tuple[str, str]] = [
    ("By how many points did the MADRS score fall with ketamine in the ORCHID-2 trial?", "14.2"),
    ("How often was dissociation reported with intranasal ketamine in the ORCHID-2 trial?", "23%"),
    ("Is norketamine safe during breastfeeding?", "not studied"),
    ("Was ketamine assessed in people with uncontrolled hypertension in ORCHID-2?", "not assessed"),
    ("How many adults did the ORCHID-2 trial of intranasal ketamine randomise?", "214"),
]
# Asked too; the answer must not quote the reference list.
REFERENCE_BAIT = "Is there a study of ketamine and depression?"


def split_plain(paragraph: str) -> list[str]:
    """The sentences of a paragraph of this report. Its prose is written without abbreviations,
    so a sentence ends at . ! or ? before a capital: ground truth that does not depend on
    psyqa's own splitter."""
    return re.split(r"(?<=[.!?])\s+(?=[A-Z])", paragraph)


def prose_sentences() -> list[str]:
    """Every sentence of the report's prose (abstract, body, back matter)."""
    paras = [ABSTRACT] + [p for _, ps in BODY for p in ps if isinstance(p, str)]
    paras += [p for _, ps in BACK_MATTER for p in ps]
    return [s for p in paras for s in split_plain(p)]


def table_rows() -> list[list[str]]:
    return next(p for _, ps in BODY for p in ps if isinstance(p, list))


# ----------------------------------------------------------------------------- PDF

def paper_pdf(order: str = "flow") -> bytes:
    """The report as a two-column PDF. `order` is "flow" (content stream in reading order) or
    "rows" (each page's lines sorted top to bottom across both columns, header and footer last)."""
    import io

    from reportlab.lib.pagesizes import letter
    from reportlab.pdfbase.pdfmetrics import stringWidth
    from reportlab.pdfgen import canvas

    width, height = letter
    margin, gutter = 54, 20
    col_w = (width - 2 * margin - gutter) / 2
    top, bottom = height - 72, 64
    pages: list[list[tuple[float, float, str, float, str]]] = [[]]  # (x, y, font, size, text)
    state = {"y": top, "col": 0, "x0": margin, "w": width - 2 * margin, "two": False}
    hyphen_done = [False]

    def new_column() -> None:
        if state["col"] == 0 and state["two"]:
            state["col"] = 1
            state["y"] = state["col_top"]
        else:
            pages.append([])
            state["col"] = 0
            state["y"] = top
            state["col_top"] = top
        state["x0"] = margin + state["col"] * (col_w + gutter)

    def emit(text: str, font: str, size: float, leading: float, indent: float = 0) -> None:
        if state["y"] - leading < bottom:
            new_column()
        state["y"] -= leading
        pages[-1].append((state["x0"] + indent, state["y"], font, size, text))

    def wrap(text: str, font: str, size: float, w: float) -> list[str]:
        lines, cur = [], ""
        for word in text.split():
            whole, cut = HYPHENATED
            if not hyphen_done[0] and word.strip(",.") == whole:  # break it, as a typesetter might
                head = f"{cur} {word[:cut]}-".strip()
                if stringWidth(head, font, size) <= w:
                    lines.append(head)
                    cur = word[cut:]
                    hyphen_done[0] = True
                    continue
            trial = f"{cur} {word}".strip()
            if stringWidth(trial, font, size) <= w:
                cur = trial
                continue
            lines.append(cur)
            cur = word
        if cur:
            lines.append(cur)
        return lines

    def paragraph(text: str, font: str = "Helvetica", size: float = 10.5, leading: float = 15,
                  after: float = 5, indent: float = 0, first: str = "") -> None:
        w = (col_w if state["two"] else width - 2 * margin) - indent
        for k, line in enumerate(wrap(text, font, size, w)):
            emit(line, font, size, leading, indent)
            if k == 0 and first:  # a hanging label such as "1." left of the first line
                pages[-1].append((state["x0"], state["y"], font, size, first))
        state["y"] -= after

    def heading(text: str) -> None:
        if state["y"] - 40 < bottom:
            new_column()
        state["y"] -= 6
        emit(text, "Helvetica-Bold", 11, 15)

    def table(rows: list[list[str]]) -> None:
        widths = [col_w * 0.5, col_w * 0.25, col_w * 0.25]
        if state["y"] - 12 * len(rows) < bottom:  # a table is kept in one column
            new_column()
        for k, row in enumerate(rows):
            font = "Helvetica-Bold" if k == 0 else "Helvetica"
            emit(row[0], font, 9, 12)
            y = state["y"]
            x = state["x0"]
            for cell, cw in zip(row[1:], widths):
                x += cw
                pages[-1].append((x, y, font, 9, cell))
        state["y"] -= 8

    # Full-width title block and abstract on page 1.
    for line in wrap(TITLE, "Helvetica-Bold", 16, width - 2 * margin):
        emit(line, "Helvetica-Bold", 16, 20)
    state["y"] -= 4
    emit(", ".join(AUTHORS), "Helvetica", 10.5, 15)
    emit(AFFILIATION, "Helvetica", 9, 12)
    emit(CORRESPONDENCE, "Helvetica", 9, 12)
    state["y"] -= 6
    emit("Abstract", "Helvetica-Bold", 11, 15)
    paragraph(ABSTRACT, size=10, after=10)
    # Two columns from here.
    state["two"] = True
    state["col_top"] = state["y"]
    state["w"] = col_w
    for name, paras in BODY:
        heading(name)
        for p in paras:
            table(p) if isinstance(p, list) else paragraph(p)
    for name, paras in BACK_MATTER:
        heading(name)
        for p in paras:
            paragraph(p, size=9.5, leading=13)
    heading("References")
    for i, ref in enumerate(REFERENCES, start=1):
        paragraph(ref, size=9, leading=12, after=3, indent=14, first=f"{i}.")
    assert hyphen_done[0], "the test text no longer puts the hyphenated word at a line end"

    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=letter, invariant=1)
    c.setTitle(TITLE)
    c.setAuthor("; ".join(AUTHORS))
    for no, ops in enumerate(pages, start=1):
        chrome = [(margin, height - 40, "Helvetica", 8, HEADER),
                  (margin, 36, "Helvetica", 8, DOI),
                  (width - margin - 10, 36, "Helvetica", 8, str(no))]
        ordered = (chrome + ops) if order == "flow" else sorted(ops, key=lambda o: (-o[1], o[0])) + chrome
        for x, y, font, size, text in ordered:
            c.setFont(font, size)
            c.drawString(x, y, text)
        c.showPage()
    c.save()
    return buf.getvalue()


# ----------------------------------------------------------------------------- text and HTML

def paper_txt(width: int = 60, page_lines: int = 36) -> str:
    """Hard-wrapped at `width` characters; a form feed and the running header every
    `page_lines` lines (a page break may fall inside a paragraph, as pdftotext output does)."""
    def fill(text: str, indent: str = "", first: str = "") -> list[str]:
        return textwrap.wrap(text, width, initial_indent=first, subsequent_indent=indent,
                             break_on_hyphens=True)

    # The title stays on one line, as in such notes; everything else is wrapped.
    out: list[str] = [TITLE, ", ".join(AUTHORS), AFFILIATION, CORRESPONDENCE, "", "Abstract", "",
                      *fill(ABSTRACT), ""]
    for name, paras in BODY + BACK_MATTER:
        out += [name, ""]
        for p in paras:
            if isinstance(p, list):
                out += ["  ".join(c.ljust(w) for c, w in zip(row, (20, 10, 10))).rstrip() for row in p]
            else:
                out += fill(p)
            out.append("")
    out += ["References", ""]
    for i, ref in enumerate(REFERENCES, start=1):
        out += fill(ref, indent="   ", first=f"{i}. ")
    lines: list[str] = []
    for k, line in enumerate(out):
        if k and k % page_lines == 0:
            lines.append("\f" + HEADER)
        lines.append(line)
    return "\n".join(lines) + "\n"


def paper_html() -> str:
    """The report as a web page: page chrome in header/nav/footer, footnote markers in <sup>,
    the table as <table>, the references as an ordered list."""
    e = html.escape
    body = [f"<h1>{e(TITLE)}</h1>", f'<p class="byline">By {e(", ".join(AUTHORS[:-1]))} and {e(AUTHORS[-1])}</p>',
            f'<p class="affiliation">{e(AFFILIATION)}</p>', f"<p>{e(CORRESPONDENCE)}</p>",
            "<h2>Abstract</h2>", f"<p>{e(ABSTRACT)}</p>"]
    for name, paras in BODY + BACK_MATTER:
        body.append(f"<h2>{e(name)}</h2>")
        for k, p in enumerate(paras):
            if isinstance(p, list):
                rows = [f"<tr>{''.join(f'<th>{e(c)}</th>' for c in p[0])}</tr>"]
                rows += [f"<tr>{''.join(f'<td>{e(c)}</td>' for c in r)}</tr>" for r in p[1:]]
                body.append(f"<table>{''.join(rows)}</table>")
            else:
                mark = f"<sup>{k + 1}</sup>" if name in ("Introduction", "Methods") else ""
                body.append(f"<p>{e(p)}{mark}</p>")
    body.append("<h2>References</h2><ol>" + "".join(f"<li>{e(r)}</li>" for r in REFERENCES) + "</ol>")
    authors = "".join(f'<meta name="citation_author" content="{e(a)}">' for a in AUTHORS)
    return (f"<!doctype html><html><head><title>{e(TITLE)} | Journal of Imaginary Psychiatry</title>"
            f"{authors}</head><body><header>{e(HEADER)}</header>"
            '<nav><a href="/">Home</a> <a href="/issues">Issues</a></nav>'
            f"<main><article>{''.join(body)}</article></main>"
            f"<footer>{e(DOI)} · Page 1</footer></body></html>")
