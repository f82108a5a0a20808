"""Labels files a person has reviewed: the decisions of ``label_issues.html``'s review mode.

The page downloads ``reviewed_labels.csv``: every example of the run, one row each, with the
label to train on (``label``), the label the run was given (``given_label``) and what the person
decided (``decision``: empty where nothing was decided). ``--data.labels_file`` reads it as it
is: rows decided ``drop`` are left out, every other row trains with its ``label``. A file
without a ``decision`` column is an ordinary labels file and is read as before.

Standard library only, so every data module and the gallery share these names and checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["DECISIONS", "REVIEW_COLUMNS", "reviewed_rows"]

#: What a person can decide about a flagged example: take the suggested label, keep the given
#: one, give another class, leave the example out of training, or come back to it later (an
#: ``unsure`` example trains with its given label until then).
DECISIONS = ("accept", "keep", "relabel", "drop", "unsure")
#: The columns a reviewed labels file adds to ``<id>,label``.
REVIEW_COLUMNS = ("given_label", "decision")


def reviewed_rows(
    rows: Sequence[dict[str, str]], where: str | Path, id_column: str, label_column: str = "label"
) -> list[tuple[int, dict[str, str]]]:
    """The rows of a labels file to train on, each with its line number, decisions applied.

    Without a ``decision`` column every row is kept. With one, each decision must be empty or
    one of :data:`DECISIONS`, each label a class of the file (one of its ``given_label`` or
    ``clean_label`` values, or with no ``given_label`` column, a label of a row nobody changed),
    and rows decided ``drop`` are left out.

    Args:
        rows: The file's rows (``csv.DictReader``), the header being line 1.
        where: The file, for the messages.
        id_column: The column that names an example (``path``, ``row_id`` or ``index``).
        label_column: The column of the label to train on (``noisy_label`` in a pool's
            ``index,clean_label,noisy_label`` file).

    Returns:
        ``(line, row)`` pairs of the rows to train on, in the file's order.

    Raises:
        ValueError: Naming the line of an unknown decision, a label that is not a class, an
            empty id or label, or an example listed twice.

    Example:
        >>> rows = [
        ...     {"path": "a.png", "label": "cat", "given_label": "cat", "decision": ""},
        ...     {"path": "b.png", "label": "cat", "given_label": "dog", "decision": "accept"},
        ...     {"path": "c.png", "label": "dog", "given_label": "dog", "decision": "drop"},
        ... ]
        >>> kept = reviewed_rows(rows, "r.csv", "path")
        >>> [(line, row["path"], row["label"]) for line, row in kept]
        [(2, 'a.png', 'cat'), (3, 'b.png', 'cat')]
    """
    numbered = list(enumerate(rows, start=2))
    first: dict[str, int] = {}
    for line, row in numbered:
        key, label = (row.get(id_column) or "").strip(), (row.get(label_column) or "").strip()
        if not key or not label:
            raise ValueError(
                f"{where}:{line}: every row needs a {id_column} and a {label_column}; got {row}."
            )
        if key in first:
            raise ValueError(
                f"{where}:{line}: {key} is listed again (first at line {first[key]}); give each "
                "example one row."
            )
        first[key] = line
    if not numbered or "decision" not in numbered[0][1]:
        return numbered
    decisions = {line: (row.get("decision") or "").strip().lower() for line, row in numbered}
    for line, decision in decisions.items():
        if decision and decision not in DECISIONS:
            raise ValueError(
                f"{where}:{line}: the decision {decision!r} is not one of {list(DECISIONS)} "
                "(or empty: not reviewed)."
            )
    if "given_label" in numbered[0][1]:  # the classes: given or known to be true somewhere
        known = ("given_label", "clean_label")
        classes = {(row.get(c) or "").strip() for _, row in numbered for c in known} - {"", "-1"}
    else:
        changed = ("accept", "relabel")
        classes = {
            row[label_column].strip() for line, row in numbered if decisions[line] not in changed
        }
    for line, row in numbered:
        if row[label_column].strip() not in classes:
            raise ValueError(
                f"{where}:{line}: the label {row[label_column].strip()!r} is not a class of this "
                f"file ({sorted(classes)[:20]}); correct it, or decide 'drop' for the row."
            )
    return [(line, row) for line, row in numbered if decisions[line] != "drop"]
