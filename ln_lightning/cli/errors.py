"""One-line error messages for ``ln-fit``: what was wrong, where, and the closest valid choice.

jsonargparse reports a bad option inside a subclass (``--model.loss.temprature``) as a nested
tree of "Does not validate against any of the Union subtypes" blocks, dozens of lines with the
cause in the middle, after the whole usage. :func:`parse_error_message` reads that tree (as
printed by jsonargparse 4.x) down to its cause and adds a "did you mean" from the options or
classes that exist; anything it cannot read is returned unchanged, so no information is lost.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["UNION_NAMES", "closest", "explain", "optimizer_error", "parse_error_message"]

#: The classes jsonargparse names in its union errors -> the config key they sit under.
UNION_NAMES = {
    "ln_lightning.module.NoisyLabelClassifier": "model",
    "ln_lightning.losses.base.NoisyLabelLoss": "loss",
    "ln_lightning.data.base.NoisyLabelDataModule": "data",
}

_KEY = re.compile(r'^Parser key "([^"]+)":')
_CLASS = re.compile(r"^Problem with given class_path '([^']+)':")
_UNKNOWN_OPTION = re.compile(r"^Option '([^']+)' is not accepted")
_NO_ATTRIBUTE = re.compile(r"^module '([\w.]+)' has no attribute '(\w+)'")
_MISSING_FILE = re.compile(r"File does not exist: '([^']+)'")
_UNRECOGNIZED = re.compile(r"^[Uu]nrecognized arguments: (\S+)")
_NOISE = (
    "Does not validate against any of the Union subtypes",
    "Subtypes:",
    "Errors:",
    "Given value type:",
    "Given value:",
    "Expected a <class 'NoneType'>",
    "Expected a path but",
)


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice closest to ``word`` (a typo or a truncation of it), if any is close."""
    choices = list(choices)
    matches = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if matches:
        return matches[0]
    longer = [choice for choice in choices if choice.startswith(word)]
    return longer[0] if len(longer) == 1 else None


def _init_options(class_path: str) -> list[str]:
    """The ``__init__`` argument names of the class at ``class_path`` (empty if unknown).

    ``**kwargs`` passed on to a base class bring that class's arguments, as jsonargparse sees it.
    """
    try:
        module, _, name = class_path.rpartition(".")
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return []
    names: list[str] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            parameters = list(inspect.signature(init).parameters.values())[1:]  # no self
        except (ValueError, TypeError):
            break
        names += [p.name for p in parameters if p.kind not in _VARIADIC and p.name not in names]
        if not any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters):
            break
    return names


_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
_EXPECTED = re.compile(r"^Expected a <class '(\w+)'>\. Got value: (.*)$")


def _exported_classes(module: str) -> list[str]:
    try:
        namespace = importlib.import_module(module)
    except ImportError:
        return []
    names = getattr(namespace, "__all__", None) or dir(namespace)
    return [name for name in names if name[:1].isupper()]


def _causes(message: str) -> list[tuple[list[str], str | None, str]]:
    """``(config keys, class path, text)`` of every leaf of a jsonargparse error tree."""
    stack: list[tuple[int, str, str]] = []  # (indent, "key" | "class", value)
    leaves = []
    for raw in message.splitlines():
        if not raw.strip():
            continue
        indent = len(raw) - len(raw.lstrip())
        text = raw.strip()
        if text.startswith("- "):
            text, indent = text[2:], indent + 2
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if key := _KEY.match(text):
            stack.append((indent, "key", key.group(1)))
        elif cls := _CLASS.match(text):
            stack.append((indent, "class", cls.group(1)))
        elif not text.startswith(_NOISE):
            keys = [value for _, kind, value in stack if kind == "key"]
            classes = [value for _, kind, value in stack if kind == "class"]
            leaves.append((keys, classes[-1] if classes else None, text))
    return leaves


def parse_error_message(message: str, options: Iterable[str] = ()) -> str:
    """The cause of a jsonargparse error in a sentence or two, with the closest valid choice.

    Args:
        message: The message jsonargparse passes to ``ArgumentParser.error``.
        options: The parser's option strings (``--trainer.max_epochs`` ...), for suggestions on
            unrecognised arguments.
    """
    first = message.strip().splitlines()[0] if message.strip() else message
    if unrecognized := _UNRECOGNIZED.match(first):
        flag = unrecognized.group(1).split("=")[0]
        guess = closest(flag, [o for o in options if o.startswith("--")])
        hint = f" Did you mean {guess}?" if guess else ""
        return f"unknown option {flag} (abbreviations are not accepted).{hint}"
    if missing := _MISSING_FILE.search(message):
        path = Path(missing.group(1))
        siblings = [p.name for p in path.parent.glob("*")] if path.parent.is_dir() else []
        guess = closest(path.name, siblings)
        hint = f" Did you mean {path.parent / guess}?" if guess else ""
        where = "" if path.parent.is_dir() else f" (nor does the folder {path.parent})"
        return f"the config file {path} does not exist{where}.{hint}"
    for keys, class_path, text in _causes(message):
        where = ".".join(keys)
        if unknown := _UNKNOWN_OPTION.match(text):
            option = unknown.group(1)
            known = _init_options(class_path) if class_path else []
            owner = class_path.rsplit(".", 1)[-1] if class_path else "this object"
            guess = closest(option, known)
            flag = f"--{where}.{option}" if where else f"--{option}"
            hint = f" Did you mean {flag.rsplit('.', 1)[0]}.{guess}?" if guess else ""
            listing = f" Its options: {', '.join(known)}." if known else ""
            return f"{flag}: {owner} has no option {option!r}.{hint}{listing}"
        if absent := _NO_ATTRIBUTE.match(text):
            module, name = absent.groups()
            guess = closest(name, _exported_classes(module))
            hint = f" Did you mean {module}.{guess}?" if guess else ""
            return f"--{where}: there is no class {module}.{name}.{hint}"
        if expected := _EXPECTED.match(text):
            text = f"expected {expected.group(1)}, got {expected.group(2)!r}"
        if where:
            return f"--{where}: {text}"
        return text
    return message.strip()


def explain(error: BaseException) -> str:
    """The sentence of an error, unwrapped from jsonargparse's reports of ``__init__`` errors.

    jsonargparse wraps an error raised while building the model, its loss or the data module
    in "Does not validate against any of the Union subtypes ..."; the original is its cause.
    """
    path = []
    while str(error).startswith("Does not validate against any of the Union subtypes"):
        subtypes = re.search(r"Subtypes: \[<class '([\w.]+)'", str(error))  # this level's
        if subtypes and subtypes.group(1) in UNION_NAMES:
            path.append(UNION_NAMES[subtypes.group(1)])
        if error.__cause__ is None:
            break
        error = error.__cause__
    text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    return f"{'.'.join(path)}: {text}" if path else text


def optimizer_error(factory: Any, error: Exception) -> str:
    """Name the flag when the optimizer rejects an argument (torch: ``Invalid learning rate``).

    Args:
        factory: The optimizer callable the CLI built (a ``functools.partial`` of the class).
        error: What the optimizer raised.
    """
    arguments = dict(getattr(factory, "keywords", {}) or {})
    classes = [a for a in (*getattr(factory, "args", ()), factory) if isinstance(a, type)]
    name = classes[0].__qualname__ if classes else "the optimizer"
    text = str(error)
    culprits = [k for k, v in arguments.items() if v is not None and str(v) in text] or [
        k for k in arguments if k.rstrip("s").lower() in text.lower()
    ]
    flag = f"--model.optimizer.{culprits[0]}" if culprits else "model.optimizer"
    value = f"={arguments[culprits[0]]!r}" if culprits else ""
    return f"{flag}{value}: {name} rejects it: {text}."
