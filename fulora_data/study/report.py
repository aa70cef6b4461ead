"""The study's report: ``report.md`` and one self-contained ``report.html`` (images inlined, no network).

Both are made from the steps' outputs and records, never typed by hand: the published table beside the
run's (percent, the difference, and the run's 95% bootstrap interval), the t-SNE figure, FID/KID per plane,
the contact sheet, the audit's findings and the provenance of every artefact (the digests of what each
step read and wrote, Hub revisions, package versions, device).
"""

from __future__ import annotations

import base64
import html
import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from fulora_data import __version__
from fulora_data.io import atomic_write_text
from fulora_data.study.graph import STATE_DIR

METRICS: tuple[str, ...] = ("accuracy", "recall", "precision", "f1", "auc")
PACKAGES: tuple[str, ...] = (
    "fulora", "torch", "torchvision", "diffusers", "transformers", "peft", "accelerate", "datasets",
    "huggingface_hub", "numpy", "scikit-learn",
)  # fmt: skip


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def records(study: Path) -> dict[str, dict]:
    """Every step's record, by step name."""
    found = {}
    for path in sorted((study / STATE_DIR).glob("*.json")):
        if path.name.endswith(".started.json"):
            continue
        value = _read(path)
        if isinstance(value, dict) and "step" in value and "identity" in value:
            found[value["step"]] = value
    return found


def results_table(study: Path, cells: list[str]) -> list[dict]:
    """The run's zero-shot rows beside the published ones: one row per (model, training set) cell."""
    from fulora_data.evaluation.reference import published_row

    rows = []
    for cell in cells:
        scores = _read(study / "evaluate" / cell / "scores.json")
        if not scores:
            continue
        paper = published_row(scores["model"], scores["train_set"])
        intervals = (scores.get("intervals") or {}).get("values") or {}
        row = {"model": scores["model"], "train_set": scores["train_set"], "n": scores.get("n"), "metrics": {}}
        for metric in METRICS:
            ours = scores["scores"].get(metric)
            ours_pct = None if ours is None else round(100 * ours, 2)
            interval = intervals.get(metric)
            ref = paper.get(metric) if paper else None
            row["metrics"][metric] = {
                "ours": ours_pct,
                "interval": None if interval is None else [round(100 * v, 2) for v in interval],
                "paper": ref,
                "diff": round(ours_pct - ref, 2) if ours_pct is not None and ref is not None else None,
                "paper_in_interval": (
                    None if interval is None or ref is None else bool(100 * interval[0] <= ref <= 100 * interval[1])
                ),
            }
        rows.append(row)
    return rows


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}"


def _images(study: Path, recs: dict[str, dict]) -> dict[str, Path]:
    """The figures the report shows: the t-SNE grid, the contact sheet(s), the audit's figures."""
    found: dict[str, Path] = {}
    compare = study / "compare"
    for name in ("tsne_grid.png", "tsne_overall.png"):
        if (compare / name).is_file():
            found["t-SNE (Inception features, the study's draw)"] = compare / name
            break
    for name, rec in sorted(recs.items()):
        sheet = (rec.get("summary") or {}).get("contact_sheet")
        if rec.get("kind") == "generate" and sheet and (study / sheet).is_file():
            found[f"contact sheet of {name}"] = study / sheet
    return found


def _compare_rows(study: Path) -> list[dict]:
    result = _read(study / "compare" / "compare.json")
    if not result:
        return []
    rows = []
    for plane, panel in result.get("planes", {}).items():
        for pair in panel.get("pairs", []):
            rows.append({"plane": plane, "a": pair["a"], "b": pair["b"], "images": pair["images"],
                         "fid": pair["fid"], "fid_interval": pair.get("fid_interval"), "kid": pair["kid"],
                         "kid_interval": pair.get("kid_interval")})  # fmt: skip
    return rows


def _order(settings: dict, name: str) -> tuple[int, str]:
    kinds = ("sources", "base", "lora", "generate", "datasets", "audit", "classifier", "evaluate", "compare")
    for rank, kind in enumerate(kinds):
        if name.startswith(kind):
            return rank, name
    return len(kinds), name


def _versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def gather(study: Path, settings: dict) -> dict[str, Any]:
    """Everything the report shows, as data (also written as ``report.json``)."""
    study = Path(study)
    recs = records(study)
    cells = settings.get("cells") or []
    saved = _read(study / STATE_DIR / "settings.json") or {}
    found = _read(study / "audit" / "audit.json") if "audit" in recs else None
    audit = None
    if found and isinstance(found.get("audit"), dict):
        audit = {k: v for k, v in found["audit"].items() if isinstance(v, int) and not isinstance(v, bool)}
    hub = {}
    base = saved.get("base") or {}
    if base.get("model"):
        from fulora_data.lora.config import SD15, SD15_REVISION

        hub["base model"] = f"{base['model']}@{SD15_REVISION}" if base["model"] == SD15 else base["model"]
    else:
        hub["base model"] = "tiny random-weight Stable Diffusion (local, no Hub commit)"
    devices = sorted({r.get("device", "?") for r in recs.values()})
    kinds = [r.get("kind") for r in recs.values()]
    seconds = sum(float(r.get("seconds") or 0) for r in recs.values())
    summary = (
        f"{len(recs)} steps done: {kinds.count('lora')} adapters, "
        f"{sum(int((r.get('summary') or {}).get('images', 0)) for r in recs.values() if r.get('kind') == 'generate')} "
        f"generated images, {kinds.count('classifier')} classifier runs, {kinds.count('evaluate')} zero-shot "
        f"evaluations; {seconds / 60:.1f} min of step time on {', '.join(devices)}; fulora {__version__}."
    )
    return {
        "summary": summary,
        "preset": settings.get("preset"),
        "note": settings.get("note") or "",
        "table": results_table(study, cells),
        "compare": _compare_rows(study),
        "audit": audit,
        "images": {k: v.relative_to(study).as_posix() for k, v in _images(study, recs).items()},
        "provenance": {
            "steps": [
                {
                    "step": name,
                    "kind": rec.get("kind"),
                    "identity": rec.get("identity"),
                    "output_digest": rec.get("output_digest"),
                    "inputs": rec.get("inputs"),
                    "device": rec.get("device"),
                    "seconds": rec.get("seconds"),
                    "fulora": rec.get("fulora"),
                }
                for name, rec in sorted(recs.items(), key=lambda item: _order(saved, item[0]))
            ],
            "hub": hub,
            "packages": _versions(),
            "devices": devices,
            "python": platform.python_version(),
            "platform": platform.platform(terse=True),
        },
    }


def _table_markdown(rows: list[dict]) -> list[str]:
    lines = [
        "| Model | Training set | " + " | ".join(f"{m} run [95% CI] / paper / diff" for m in METRICS) + " |",
        "|---|---|" + "---:|" * len(METRICS),
    ]
    for row in rows:
        cells = []
        for metric in METRICS:
            m = row["metrics"][metric]
            ci = f" [{_num(m['interval'][0])}, {_num(m['interval'][1])}]" if m["interval"] else ""
            cells.append(f"{_num(m['ours'])}{ci} / {_num(m['paper'])} / {_signed(m['diff'])}")
        lines.append(f"| {row['model']} | {row['train_set']} | " + " | ".join(cells) + " |")
    return lines


def render_markdown(data: dict[str, Any]) -> str:
    lines = [f"# FU-LoRA study: preset `{data['preset']}`", "", data["summary"], ""]
    if data["note"]:
        lines += [f"> {data['note']}", ""]
    lines += [
        "## Zero-shot results on the African test set: this run beside the published table",
        "",
        "Percent, the study's protocol. Run: the run's score and its 95% percentile bootstrap interval over "
        "test images; paper: Wang et al., FU-LoRA (MICCAI PIPPI 2024), as published; diff: run minus paper.",
        "",
        *(_table_markdown(data["table"]) if data["table"] else ["No evaluation ran."]),
        "",
    ]
    if data["compare"]:
        lines += ["## FID and KID per plane", "", "| Plane | Sets | Images | FID [CI] | KID [CI] |",
                  "|---|---|---|---:|---:|"]  # fmt: skip
        for r in data["compare"]:
            fid_ci = f" [{r['fid_interval'][0]:.2f}, {r['fid_interval'][1]:.2f}]" if r["fid_interval"] else ""
            kid_ci = f" [{r['kid_interval'][0]:.4g}, {r['kid_interval'][1]:.4g}]" if r["kid_interval"] else ""
            lines.append(f"| {r['plane']} | {r['a']} vs {r['b']} | {r['images'][0]} / {r['images'][1]} | "
                         f"{r['fid']:.2f}{fid_ci} | {r['kid']:.4g}{kid_ci} |")  # fmt: skip
        lines.append("")
    for title, path in data["images"].items():
        lines += [f"## {title[0].upper()}{title[1:]}", "", f"![{title}](../{path})", ""]
    lines += ["## Audit", ""]
    if data["audit"]:
        lines += [f"- {k.replace('_', ' ')}: {v}" for k, v in data["audit"].items()] + [""]
    else:
        lines += ["No audit ran.", ""]
    prov = data["provenance"]
    lines += ["## Provenance", "", "| Step | Output digest | Read (input digests) | Device | Seconds |",
              "|---|---|---|---|---:|"]  # fmt: skip
    for step in prov["steps"]:
        inputs = ", ".join(f"{k} {str(v)[:12]}" for k, v in sorted((step["inputs"] or {}).items()))
        lines.append(f"| {step['step']} | `{str(step['output_digest'])[:16]}` | {inputs} | {step['device']} | "
                     f"{step['seconds']} |")  # fmt: skip
    lines += ["", "Hub: " + "; ".join(f"{k}: {v}" for k, v in prov["hub"].items()), "",
              "Packages: " + ", ".join(f"{k} {v}" for k, v in prov["packages"].items()), "",
              f"Devices: {', '.join(prov['devices'])}; Python {prov['python']} on {prov['platform']}", ""]  # fmt: skip
    return "\n".join(lines)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1200px;color:#1b1f24}
h1{font-size:22px;margin:0 0 8px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d0d7de}
.note{background:#fff8c5;border:1px solid #d4a72c;padding:8px 12px;border-radius:6px}
table{border-collapse:collapse;font-size:13px;margin:8px 0} th,td{border:1px solid #d0d7de;padding:4px 8px}
th{background:#f6f8fa} td.num{text-align:right;font-variant-numeric:tabular-nums}
.pos{color:#1a7f37} .neg{color:#cf222e} .ci{color:#57606a;font-size:11px}
img{max-width:100%;border:1px solid #d0d7de} img.sheet{width:720px;image-rendering:pixelated} code{font-size:12px} .small{color:#57606a;font-size:12px}
"""


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def render_html(data: dict[str, Any], study: Path) -> str:
    e = html.escape
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>FU-LoRA study: {e(str(data['preset']))}"
             f"</title><style>{_CSS}</style></head><body>",
             f"<h1>FU-LoRA study: preset <code>{e(str(data['preset']))}</code></h1>"]  # fmt: skip
    parts.append(f"<p class='small'>{e(data['summary'])}</p>")
    if data["note"]:
        parts.append(f"<p class='note'>{e(data['note'])}</p>")
    parts.append("<h2>Zero-shot results on the African test set: this run beside the published table</h2>")
    parts.append("<p class='small'>Percent, the study's protocol. Run: score [95% percentile bootstrap interval "
                 "over test images]; paper: Wang et al., FU-LoRA (MICCAI PIPPI 2024); diff: run minus paper.</p>")  # fmt: skip
    if data["table"]:
        head = "".join(f"<th colspan='3'>{m}</th>" for m in METRICS)
        sub = "<th>run</th><th>paper</th><th>diff</th>" * len(METRICS)
        parts.append(f"<table><tr><th rowspan='2'>Model</th><th rowspan='2'>Training set</th>{head}</tr><tr>{sub}</tr>")
        for row in data["table"]:
            cells = ""
            for metric in METRICS:
                m = row["metrics"][metric]
                ci = (f"<br><span class='ci'>[{_num(m['interval'][0])}, {_num(m['interval'][1])}]</span>"
                      if m["interval"] else "")  # fmt: skip
                cls = "" if m["diff"] is None else ("pos" if m["diff"] >= 0 else "neg")
                cells += (f"<td class='num'>{_num(m['ours'])}{ci}</td><td class='num'>{_num(m['paper'])}</td>"
                          f"<td class='num {cls}'>{_signed(m['diff'])}</td>")  # fmt: skip
            parts.append(f"<tr><td>{e(row['model'])}</td><td>{e(row['train_set'])}</td>{cells}</tr>")
        parts.append("</table>")
    else:
        parts.append("<p>No evaluation ran.</p>")
    if data["compare"]:
        parts.append("<h2>FID and KID per plane</h2><table><tr><th>Plane</th><th>Sets</th><th>Images</th>"
                     "<th>FID [CI]</th><th>KID [CI]</th></tr>")  # fmt: skip
        for r in data["compare"]:
            fid_ci = f" <span class='ci'>[{r['fid_interval'][0]:.2f}, {r['fid_interval'][1]:.2f}]</span>" if r["fid_interval"] else ""
            kid_ci = f" <span class='ci'>[{r['kid_interval'][0]:.4g}, {r['kid_interval'][1]:.4g}]</span>" if r["kid_interval"] else ""
            parts.append(f"<tr><td>{e(r['plane'])}</td><td>{e(r['a'])} vs {e(r['b'])}</td>"
                         f"<td class='num'>{r['images'][0]} / {r['images'][1]}</td>"
                         f"<td class='num'>{r['fid']:.2f}{fid_ci}</td><td class='num'>{r['kid']:.4g}{kid_ci}</td></tr>")  # fmt: skip
        parts.append("</table>")
    for title, path in data["images"].items():
        css = " class='sheet'" if title.startswith("contact sheet") else ""
        parts.append(f"<h2>{e(title[0].upper() + title[1:])}</h2><img{css} alt='{e(title)}' src='{_data_uri(study / path)}'>")
    parts.append("<h2>Audit</h2>")
    if data["audit"]:
        parts.append("<ul>" + "".join(f"<li>{e(k.replace('_', ' '))}: {e(str(v))}</li>" for k, v in data["audit"].items()) + "</ul>")
    else:
        parts.append("<p>No audit ran.</p>")
    prov = data["provenance"]
    parts.append("<h2>Provenance</h2><table><tr><th>Step</th><th>Output digest (sha256)</th><th>Read (input digests)</th>"
                 "<th>Device</th><th>Seconds</th></tr>")  # fmt: skip
    for step in prov["steps"]:
        inputs = "<br>".join(f"{e(k)} <code>{e(str(v)[:16])}</code>" for k, v in sorted((step["inputs"] or {}).items()))
        parts.append(f"<tr><td>{e(step['step'])}</td><td><code>{e(str(step['output_digest'])[:24])}</code></td>"
                     f"<td>{inputs}</td><td>{e(str(step['device']))}</td><td class='num'>{step['seconds']}</td></tr>")  # fmt: skip
    parts.append("</table>")
    parts.append("<p class='small'>Hub: " + "; ".join(f"{e(k)}: {e(v)}" for k, v in prov["hub"].items()) + "</p>")
    parts.append("<p class='small'>Packages: " + ", ".join(f"{e(k)} {e(v)}" for k, v in prov["packages"].items()) + "</p>")
    parts.append(f"<p class='small'>Devices: {e(', '.join(prov['devices']))}; Python {e(prov['python'])} on "
                 f"{e(prov['platform'])}</p></body></html>")  # fmt: skip
    return "\n".join(parts)


def write_report(study: str | os.PathLike, out: str | os.PathLike, settings: dict) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` and ``report.json`` into ``out``; returns their paths."""
    study, out = Path(study), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = gather(study, settings)
    paths = {"markdown": out / "report.md", "html": out / "report.html", "json": out / "report.json"}
    atomic_write_text(paths["markdown"], render_markdown(data))
    atomic_write_text(paths["html"], render_html(data, study))
    atomic_write_text(paths["json"], json.dumps(data, indent=2) + "\n")
    return paths
