"""Which given labels look wrong, and everything a run writes about them, in one package.

* ``rule.py``: the verdict (confident learning, :func:`find_label_issues`), the ranking scores
  (:func:`mislabel_scores`) and how well they find the labels known to be wrong;
* ``store.py``: what the pass keeps of each example (:class:`TopClasses`, O(N k) memory), the
  probability file written row by row (:class:`PredProbsFile`) and the table
  (:class:`IssueTable`);
* ``files.py``: ``label_issues.csv`` (and reading it back), ``cleaned_labels.csv``,
  ``relabeled_labels.csv``,
  ``classes.txt``, cleanlab's ``pred_probs.npy`` / ``labels.npy``;
* ``duplicates.py``: near-duplicates with conflicting labels (cosine k-nearest neighbours of
  the features, O(N k) memory), ``near_duplicates.csv``;
* ``cautions.py``: why the flags of a run cannot be trusted yet;
* ``gallery.py``: ``label_issues.html`` and the ``label_issues.png`` contact sheet;
* ``report.py``: one report from start to end (the pass, the verdict, the files, the summary),
  which :class:`~ln_lightning.callbacks.MislabelReport` and ``ln-fit-sweep folds`` call.

Everything here is plain tensors and files; only ``report.py`` runs a model.
"""

from ln_lightning.label_issues.cautions import (
    MIN_TRUSTED_PER_CLASS,
    caution_rows,
    caution_text,
    cautions,
)
from ln_lightning.label_issues.duplicates import (
    DuplicatePairs,
    DuplicateSearch,
    conflicting_pairs,
    nearest_neighbours,
    signature,
    write_near_duplicates,
)
from ln_lightning.label_issues.files import (
    CLASSES_FILE,
    CLEANING,
    DOUBTFUL,
    Relabeling,
    read_label_issues,
    suggested_probability,
    write_class_names,
    write_cleaned_labels,
    write_cleanlab_inputs,
    write_label_issues,
    write_relabeled_labels,
)
from ln_lightning.label_issues.rule import (
    SCORES,
    LabelIssues,
    detection_metrics,
    find_label_issues,
    mislabel_scores,
    summary,
)
from ln_lightning.label_issues.store import (
    PRED_PROBS,
    PROB_COLUMNS,
    TOP_CLASSES,
    IssueTable,
    PredProbsFile,
    TopClasses,
)

__all__ = [
    "CLASSES_FILE",
    "CLEANING",
    "DOUBTFUL",
    "MIN_TRUSTED_PER_CLASS",
    "PRED_PROBS",
    "PROB_COLUMNS",
    "SCORES",
    "TOP_CLASSES",
    "DuplicatePairs",
    "DuplicateSearch",
    "IssueTable",
    "LabelIssues",
    "PredProbsFile",
    "Relabeling",
    "TopClasses",
    "caution_rows",
    "caution_text",
    "cautions",
    "conflicting_pairs",
    "detection_metrics",
    "find_label_issues",
    "mislabel_scores",
    "nearest_neighbours",
    "read_label_issues",
    "signature",
    "suggested_probability",
    "summary",
    "write_class_names",
    "write_cleaned_labels",
    "write_cleanlab_inputs",
    "write_label_issues",
    "write_near_duplicates",
    "write_relabeled_labels",
]
