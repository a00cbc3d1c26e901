"""``python -m benchmarks.reporttext``: the report reader on two benchmarks, side by side.

1. The NegEx annotated test set (``../shared/data/negex/Annotations-1-120.txt``; Chapman et al.
   2001; see ``../shared/data/README.md``): one concept per sentence, Affirmed or Negated. The
   sentence is read by the project's reader with the project's cue lists
   (``mappings/report-text.toml``), the concept being the finding; "negated" is Negated,
   everything else (affirmed, uncertain, hypothetical, historical) is Affirmed, as the set's
   annotation has it. The annotated occurrence is the one written in upper case when there is
   one, else the first. Rows whose concept does not occur in the sentence are counted and left
   out.
   Figures: accuracy, negated-class precision / recall / F1, milliseconds per sentence
   (tokenising and reading, best of 5 runs).
2. The project's foot-report corpus (``tests/data/foot_reports.toml``): every excerpt is read
   as a report's ``presentedForm`` (text extraction, sections, sentences); per concept and per
   expected class, the share of (excerpt, concept) pairs where the reading agrees with the
   expected one (an unlisted concept agrees when it is read as absent or negated), and
   milliseconds per report.

Goal (issue 11): NegEx accuracy >= 0.98 and negated F1 >= 0.95 at <= 0.1 ms per sentence.
Nothing from the texts is printed except, with ``--show-errors``, the NegEx rows it gets wrong
(public data) and the ids of corpus excerpts that disagree.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cds_service.clinical.reportformats import report_texts  # noqa: E402
from cds_service.clinical.reporttext import NEG, Reader  # noqa: E402
from cds_service.config import DEFAULT_MAPPINGS_DIR  # noqa: E402
from cds_service.mappings import load_mappings  # noqa: E402
from tests.report_corpus import CONCEPTS, agrees, load  # noqa: E402

NEGEX = ROOT.parent / "shared" / "data" / "negex" / "Annotations-1-120.txt"
GOAL = {"accuracy": 0.98, "negated_f1": 0.95, "ms_per_sentence": 0.1}


def say(line: str) -> None:
    sys.stdout.write(line + "\n")


def negex_rows(path: Path) -> list[tuple[str, str, bool]]:
    """(concept, sentence, negated) for the rows labelled Affirmed or Negated."""
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        next(reader)
        rows = []
        for row in reader:
            if len(row) >= 4 and row[3].strip() in ("Affirmed", "Negated"):
                rows.append((row[1].strip().strip('"'), row[2], row[3].strip() == "Negated"))
    return rows


def find(tokens: list[str], concept: list[str]) -> int | None:
    n = len(concept)
    for i in range(len(tokens) - n + 1):
        if tokens[i:i + n] == concept:
            return i
    return None


def read_negex(reader: Reader, rows: list[tuple[str, str, bool]]):  # type: ignore[no-untyped-def]
    predictions = []
    for concept, sentence, _ in rows:
        tokens = reader.tokens(sentence)
        target = reader.tokens(concept)
        # The set marks the annotated occurrence by writing it in upper case; prefer that one.
        marked = sentence.find(concept.upper()) if concept.upper() != concept else -1
        start = None
        if marked >= 0 and target:
            start = find(tokens[len(reader.tokens(sentence[:marked])):], target)
            if start is not None:
                start += len(reader.tokens(sentence[:marked]))
        if start is None and target:
            start = find(tokens, target)
        if start is None:
            predictions.append(None)
            continue
        (_, category, _), = reader.read_tokens(tokens, [(start, start + len(target), "x")])
        predictions.append(category == NEG)
    return predictions


def negex_figures(reader: Reader, path: Path, show: bool) -> dict[str, float]:
    rows = negex_rows(path)
    predictions = read_negex(reader, rows)
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        read_negex(reader, rows)
        best = min(best, time.perf_counter() - started)
    counts: Counter[str] = Counter()
    for (concept, sentence, negated), predicted in zip(rows, predictions, strict=True):
        if predicted is None:
            counts["skipped"] += 1
            continue
        key = ("t" if predicted == negated else "f") + ("p" if predicted else "n")
        counts[key] += 1
        if show and predicted != negated:
            say(f"  negex {'FN' if negated else 'FP'}: [{concept}] {sentence[:160]}")
    read = len(rows) - counts["skipped"]
    precision = counts["tp"] / max(1, counts["tp"] + counts["fp"])
    recall = counts["tp"] / max(1, counts["tp"] + counts["fn"])
    return {"rows": len(rows), "read": read, "skipped": counts["skipped"],
            "accuracy": (counts["tp"] + counts["tn"]) / max(1, read),
            "negated_precision": precision, "negated_recall": recall,
            "negated_f1": 2 * precision * recall / max(1e-9, precision + recall),
            "ms_per_sentence": best / max(1, len(rows)) * 1000}


def corpus_figures(reader: Reader, show: bool) -> dict[str, object]:
    excerpts = load()
    by_concept: dict[str, list[int]] = {cid: [0, 0] for cid in CONCEPTS.values()}
    by_class: dict[str, list[int]] = {k: [0, 0] for k in
                                      ("present", "uncertain", "negated", "unlisted")}
    disagreeing = []
    forms = [report_texts({"presentedForm": [e.attachment()]}).texts for e in excerpts]
    started = time.perf_counter()
    readings = [reader.read_report(texts) for texts in forms]
    elapsed = time.perf_counter() - started
    for excerpt, reading in zip(excerpts, readings, strict=True):
        ok_all = True
        for cid in CONCEPTS.values():
            expected = excerpt.expect.get(cid)
            got = reading.get(cid)
            ok = agrees(expected, got.value if got else None)
            ok_all &= ok
            for table, key in ((by_concept, cid), (by_class, expected or "unlisted")):
                table[key][0] += ok
                table[key][1] += 1
        if not ok_all:
            disagreeing.append(excerpt.id)
    if show:
        for ident in disagreeing:
            say(f"  corpus disagrees: {ident}")
    return {"excerpts": len(excerpts), "agree_all": len(excerpts) - len(disagreeing),
            "by_concept": by_concept, "by_class": by_class,
            "ms_per_report": elapsed / max(1, len(excerpts)) * 1000}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reporttext")
    parser.add_argument("--negex", type=Path, default=NEGEX, help="NegEx annotations file")
    parser.add_argument("--show-errors", action="store_true")
    args = parser.parse_args(argv)
    if not args.negex.is_file():
        sys.stderr.write(f"{args.negex}: not found\n")
        return 2
    reader = Reader.from_mappings(load_mappings(DEFAULT_MAPPINGS_DIR))
    negex = negex_figures(reader, args.negex, args.show_errors)
    corpus = corpus_figures(reader, args.show_errors)
    left = [
        "NegEx test set (Chapman 2001)",
        f"rows {negex['rows']}, read {negex['read']}, skipped {negex['skipped']}",
        f"accuracy            {negex['accuracy']:.3f}  (goal >= {GOAL['accuracy']})",
        f"negated precision   {negex['negated_precision']:.3f}",
        f"negated recall      {negex['negated_recall']:.3f}",
        f"negated F1          {negex['negated_f1']:.3f}  (goal >= {GOAL['negated_f1']})",
        f"ms per sentence     {negex['ms_per_sentence']:.4f} (goal <= {GOAL['ms_per_sentence']})",
    ]
    right = ["Foot-report corpus (tests/data)",
             f"excerpts {corpus['excerpts']}, all concepts agree {corpus['agree_all']}",
             f"ms per report       {corpus['ms_per_report']:.4f}", "agreement per class:"]
    for name, (ok, total) in corpus["by_class"].items():  # type: ignore[attr-defined]
        right.append(f"  {name:<26} {ok / max(1, total):.3f} ({ok}/{total})")
    right.append("agreement per concept:")
    for name, (ok, total) in corpus["by_concept"].items():  # type: ignore[attr-defined]
        right.append(f"  {name:<26} {ok / max(1, total):.3f} ({ok}/{total})")
    width = max(len(line) for line in left) + 4
    for i in range(max(len(left), len(right))):
        a = left[i] if i < len(left) else ""
        b = right[i] if i < len(right) else ""
        say(f"{a:<{width}}{b}")
    met = (negex["accuracy"] >= GOAL["accuracy"] and negex["negated_f1"] >= GOAL["negated_f1"]
           and negex["ms_per_sentence"] <= GOAL["ms_per_sentence"])
    say(f"\ngoal {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
