"""The findings in docs/ name the zoo checkpoints they were measured on, and those are the shipped ones.

Every ``docs/findings_*.md`` carries one machine-readable line per zoo model it uses (optionally as a list item)::

    Checkpoint: crnn_sed sha256 5427f557bc9e
    - Checkpoint: crnn_sed sha256 5427f557bc9e (test split, measured 2026-12-01)

(the model's name as in ``model_zoo/checkpoints/<name>.safetensors`` and at least the first 12 hex digits of
that file's sha256). The check fails when

* a named hash is not (a prefix of) the shipped file's sha256 — the numbers were measured on other weights;
* a doc mentions a zoo model (its name as a whole word) without a ``Checkpoint:`` line for it;
* a ``Checkpoint:`` line names a model that has no shipped checkpoint;
* a doc quotes any other 12+-digit hex string that is no shipped checkpoint's hash prefix (an old hash left in
  a table or in prose).

When a checkpoint is retrained, rerun the doc's numbers with ``docs/scripts/`` (see docs/scripts/README.md) and
then update its ``Checkpoint:`` line; the failure message names the doc and the model.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CHECKPOINTS = ROOT / "model_zoo" / "checkpoints"
MIN_HEX = 12

LINE = re.compile(r"^(?:[-*][ \t]+)?Checkpoint:[ \t]+`?([A-Za-z0-9_]+)`?[ \t]+sha256[ \t]+`?([0-9a-fA-F]+)`?[ \t]*(.*)$",
                  re.M)
HEXLIKE = re.compile(r"(?<![0-9A-Za-z])[0-9a-f]{%d,64}(?![0-9A-Za-z])" % MIN_HEX)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def shipped_hashes(directory: Path = CHECKPOINTS) -> dict:
    """``{model name: sha256}`` of every shipped ``*.safetensors`` checkpoint."""
    return {p.stem: sha256_of(p) for p in sorted(directory.glob("*.safetensors"))}


def check_doc(text: str, shipped: dict) -> list:
    """Problems of one findings document (empty when its named checkpoints are the shipped ones)."""
    problems = []
    named = {}
    for m in LINE.finditer(text):
        name, digest = m.group(1), m.group(2).lower()
        if len(digest) < MIN_HEX:
            problems.append(f"Checkpoint line for {name}: give at least {MIN_HEX} hex digits of the sha256, "
                            f"given {digest!r}")
            continue
        if name not in shipped:
            problems.append(f"Checkpoint line names {name!r}, which has no model_zoo/checkpoints/{name}.safetensors "
                            f"(shipped: {', '.join(sorted(shipped))})")
            continue
        if not shipped[name].startswith(digest):
            problems.append(f"{name}: the doc's numbers are from checkpoint {digest[:12]}, the shipped one is "
                            f"{shipped[name][:12]} — rerun them (docs/scripts/) and update the Checkpoint line")
        named.setdefault(name, []).append(digest)
    body = LINE.sub("", text)
    for name in sorted(shipped):
        if name not in named and re.search(rf"(?<![0-9A-Za-z_]){re.escape(name)}(?![0-9A-Za-z_])", body):
            problems.append(f"{name} is used in the doc but no 'Checkpoint: {name} sha256 "
                            f"{shipped[name][:12]}' line says which weights its numbers come from")
    for token in sorted(set(HEXLIKE.findall(body))):
        if not any(h.startswith(token) for h in shipped.values()):
            problems.append(f"hash-like {token!r} in the text is no shipped checkpoint's sha256 (an old "
                            f"checkpoint's numbers?)")
    return problems


def findings_docs() -> list:
    return sorted(DOCS.glob("findings_*.md"))


def test_there_are_findings_docs_and_checkpoints():
    assert findings_docs(), f"no docs/findings_*.md under {DOCS}"
    assert shipped_hashes(), f"no *.safetensors under {CHECKPOINTS}"


@pytest.mark.parametrize("doc", findings_docs(), ids=lambda p: p.name)
def test_findings_name_the_shipped_checkpoints(doc):
    shipped = shipped_hashes()
    text = doc.read_text(encoding="utf-8")
    problems = check_doc(text, shipped)
    assert not problems, f"{doc.relative_to(ROOT)}:\n  " + "\n  ".join(problems)
    assert LINE.search(text), f"{doc.relative_to(ROOT)} names no checkpoint (add 'Checkpoint: <model> sha256 <hex>')"


# ---- the check can fail: tampered copies of the real docs --------------------------------------------------------
def _a_doc_with_a_checkpoint():
    for doc in findings_docs():
        text = doc.read_text(encoding="utf-8")
        m = LINE.search(text)
        if m:
            return doc, text, m
    pytest.fail("no findings doc has a Checkpoint line")


def test_check_fails_on_a_tampered_hash():
    shipped = shipped_hashes()
    doc, text, m = _a_doc_with_a_checkpoint()
    digest = m.group(2)
    flipped = ("0" if digest[0] != "0" else "1") + digest[1:]
    tampered = text.replace(m.group(0), m.group(0).replace(digest, flipped, 1), 1)
    problems = check_doc(tampered, shipped)
    assert any(m.group(1) in p and "rerun" in p for p in problems), problems


def test_check_fails_on_a_retrained_checkpoint(tmp_path):
    """Same doc, a checkpoint file whose bytes changed (a retraining): the doc is stale."""
    doc, text, m = _a_doc_with_a_checkpoint()
    name = m.group(1)
    (tmp_path / f"{name}.safetensors").write_bytes((CHECKPOINTS / f"{name}.safetensors").read_bytes() + b"\0")
    for other in CHECKPOINTS.glob("*.safetensors"):
        if other.stem != name:
            (tmp_path / other.name).symlink_to(other)
    problems = check_doc(text, shipped_hashes(tmp_path))
    assert any(name in p and "shipped one is" in p for p in problems), problems


def test_check_fails_on_a_model_without_its_line():
    shipped = shipped_hashes()
    doc, text, m = _a_doc_with_a_checkpoint()
    problems = check_doc(text.replace(m.group(0), ""), shipped)
    assert any(f"{m.group(1)} is used in the doc" in p for p in problems), problems


def test_check_fails_on_unknown_models_short_hashes_and_stale_hex():
    shipped = {"alpha": "ab" * 32, "beta": "cd" * 32}
    ok = "Checkpoint: alpha sha256 abababababab\nWe ran `alpha`.\n"
    assert check_doc(ok, shipped) == []
    assert any("no model_zoo" in p for p in check_doc(ok + "Checkpoint: gamma sha256 abababababab\n", shipped))
    assert any("at least 12" in p for p in check_doc("Checkpoint: alpha sha256 abab\n", shipped))
    assert any("beta is used" in p for p in check_doc(ok + "and beta too\n", shipped))
    assert check_doc(ok + "not a model: beta_x, xbeta\n", shipped) == []
    assert check_doc("- Checkpoint: alpha sha256 abababababab (test split)\n`alpha`", shipped) == []
    two = "- Checkpoint: alpha sha256 abababababab\n- Checkpoint: beta sha256 cdcdcdcdcdcd\nalpha, beta\n"
    assert check_doc(two, shipped) == []  # one line each, not one line swallowing the next
    assert any("hash-like" in p for p in check_doc(ok + "earlier: `0123456789ab`\n", shipped))
