"""Export built datasets as Hub-ready repository folders: Parquet shards, a card and a manifest.

Layout of an export folder (one dataset, one or more configs)::

    README.md                                   the card (YAML ``configs`` point at the shards)
    fulora_export.json                          {"format", "name", "version", "default_config",
                                                 "configs": [...], "details": {...},
                                                 "files": {"data/<config>/<shard>": {"num_bytes", "sha256"}}}
    data/<config>/<split>-00000-of-00002.parquet

The Parquet shards embed the image bytes, so ``datasets.load_dataset(folder, config)`` (and, once pushed,
``load_dataset("fulora/<name>", config)``) returns the builder's rows and features with no script. Shards are
cut so that each holds at most ``max_shard_size`` bytes of Arrow data (500 MB by default, the size
``push_to_hub`` uses).

Exporting another config into the same folder adds it; re-exporting a config replaces only that config's
shards. A non-empty folder without ``fulora_export.json``, or one holding another dataset or version, is
refused. Every export has a default config (marked ``default: true`` in the card's YAML, so
``load_dataset("fulora/<name>")`` works with no config name). The manifest, like the card, names sources by
file name and sha256 only (:func:`public`): nothing local leaves the machine. Writes are atomic: the whole
export is staged in a sibling folder (``.<out>.tmp-*``, unchanged shards hard-linked) and swapped in at
once, under a file lock (``.<out>.lock``, ``filelock``) so that two exports into one folder run one after
the other; a staging folder left by a killed run is removed by the next one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from fulora_data import datasets_internals as hf
from fulora_data.errors import ConfigError, DataError, OptionValueError
from fulora_data.io import (
    atomic_folder,
    atomic_write_text,
    ensure_folder,
    file_sha256,
    find_folder,
    remove_leftovers,
)

MANIFEST = "fulora_export.json"
FORMAT = "fulora-export"
DEFAULT_MAX_SHARD_SIZE = 500 * 1024 * 1024


def read_manifest(folder: str | os.PathLike) -> dict[str, Any] | None:
    """Return an export folder's manifest, or ``None`` if it has none.

    Raises:
        DataError: If the manifest is not valid JSON.
    """
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"{path} is not valid JSON ({err})") from err


def _check_manifest_shape(path: Path, manifest: Any) -> None:
    """Refuse a manifest this exporter could not update, before anything is written."""
    problem = None
    if not isinstance(manifest, dict):
        problem = f"it holds a {type(manifest).__name__}, not an object"
    elif not isinstance(manifest.get("configs"), list) or not all(
        isinstance(c, str) for c in manifest["configs"]
    ):
        problem = f"configs must be a list of names, got {manifest.get('configs')!r}"
    elif not isinstance(manifest.get("details", {}), dict) or not isinstance(manifest.get("files", {}), dict):
        problem = "details and files must be objects"
    if problem:
        raise DataError(f"{path} is malformed ({problem}); export into a new folder or export it again")


def _is_local_path(text: str) -> bool:
    """Whether a string names a file or folder on this machine (an absolute, home or relative path)."""
    if "://" in text or "\n" in text or not text.strip():
        return False
    return (
        os.path.isabs(text)
        or text.startswith(("~", "./", "../"))
        or (os.sep in text and os.path.exists(text))
    )


def public(value: Any) -> Any:
    """A JSON-ready copy of ``value`` with every local path replaced by what may leave the machine.

    A file becomes ``{"file": name, "sha256": ...}``, a folder (or a path that no longer exists) its bare
    name: manifests and cards pushed to the Hub name sources by file name and checksum, never by the
    publisher's paths.
    """
    if isinstance(value, dict):
        # A source's location sits beside its checksums already: its name is enough.
        return {
            key: Path(item).name if key == "location" and _is_local_path(str(item)) else public(item)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [public(item) for item in value]
    if isinstance(value, os.PathLike) or (isinstance(value, str) and _is_local_path(value)):
        path = Path(os.fspath(value)).expanduser()
        if path.is_file():
            return {"file": path.name, "sha256": file_sha256(path)}
        return path.name
    return value


def _check_target(out: Path, name: str, version: str) -> dict[str, Any] | None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder")
    ensure_folder(out.parent, f"--out {out}: its folder")
    manifest = read_manifest(out) if out.is_dir() else None
    if manifest is None:
        if out.is_dir() and any(out.iterdir()) and not _only_old_staging(out):
            raise ConfigError(
                f"--out {out} is not empty and is not a fulora export; choose an empty or new folder"
            )
        return None
    _check_manifest_shape(out / MANIFEST, manifest)
    if manifest.get("name") != name:
        raise ConfigError(
            f"--out {out} holds an export of {manifest.get('name')!r}, not {name!r}; choose another folder"
        )
    if manifest.get("version") != version:
        raise ConfigError(
            f"--out {out} holds version {manifest.get('version')} of {name}, not {version}; a release tag never "
            "moves, so export this version into a new folder"
        )
    return manifest


def write_parquet_shards(
    dataset,
    folder: Path,
    split: str,
    *,
    max_shard_size: int = DEFAULT_MAX_SHARD_SIZE,
    nbytes: int | None = None,
) -> list[dict[str, Any]]:
    """Write one split as ``<split>-XXXXX-of-YYYYY.parquet`` shards with the image bytes embedded.

    Args:
        dataset: The split.
        folder: Where the shards go.
        split: The split's name (the shards' prefix).
        max_shard_size: Most bytes of Arrow data per shard.
        nbytes: The split's ``estimate_nbytes``, when the caller has it already (it reads 1,000 rows).

    Returns:
        One ``{"file", "num_rows", "num_bytes", "sha256", "writer"}`` per shard; ``writer`` says which path
        wrote it: ``"arrow"`` (the fast path, Arrow tables straight to a ``ParquetWriter``) or
        ``"to_parquet"`` (``Dataset.to_parquet``, where ``datasets`` gave no layout to copy).
    """
    nbytes = hf.estimate_nbytes(dataset) if nbytes is None else nbytes
    num_shards = max(1, math.ceil(nbytes / max_shard_size)) if len(dataset) else 1
    num_shards = min(num_shards, max(1, len(dataset)))
    files = []
    for index in range(num_shards):
        shard = (
            dataset if num_shards == 1 else dataset.shard(num_shards=num_shards, index=index, contiguous=True)
        )
        path = folder / f"{split}-{index:05d}-of-{num_shards:05d}.parquet"
        writer = _write_parquet(shard, path, nbytes if num_shards == 1 else hf.estimate_nbytes(shard))
        files.append(
            {
                "file": path.name,
                "num_rows": len(shard),
                "num_bytes": path.stat().st_size,
                "sha256": file_sha256(path),
                "writer": writer,
            }
        )
    return files


def _write_parquet(dataset, path: Path, nbytes: int) -> str:
    """Write ``dataset`` to ``path`` as ``Dataset.to_parquet`` lays it out (the same file), a writer call per
    batch of rows taken as Arrow tables, without ``to_parquet``'s per-batch Python work.

    Returns:
        The path taken: ``"arrow"``, or ``"to_parquet"`` when ``datasets`` gives no layout to copy.
    """
    import pyarrow.parquet as pq

    layout = hf.parquet_layout(dataset, nbytes)
    if layout is None:
        dataset.to_parquet(str(path))
        return "to_parquet"
    rows = dataset.with_format("arrow")
    with pq.ParquetWriter(str(path), schema=layout.schema, **layout.writer_options) as writer:
        for start in range(0, len(dataset), layout.batch_size):
            writer.write_table(rows[start : start + layout.batch_size])
        writer.add_key_value_metadata(layout.metadata)
    return "arrow"


def export(
    name: str,
    configs: list[str] | tuple[str, ...] | None,
    out: str | os.PathLike,
    *,
    source: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    max_shard_size: int = DEFAULT_MAX_SHARD_SIZE,
    repo_id: str | None = None,
    default_config: str | None = None,
    version: str | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Build (or reuse) configs of a dataset and export them into a Hub-ready folder.

    Args:
        name: A registered dataset.
        configs: Configs to export; ``None`` or empty for the default config.
        out: The export folder: new, empty, or an earlier export of the same dataset and version.
        source: The dataset's archive or folder (``None`` downloads it).
        cache_dir: Where built datasets are cached.
        max_shard_size: Most bytes of Arrow data per Parquet shard.
        repo_id: The Hub repository named in the card's loading example (default ``fulora/<name>``).
        default_config: The config ``load_dataset(REPO)`` loads with no config name. Default: the one
            given before for this folder, else the builder's default config if the folder has it, else the
            first config exported.
        version: The release version ``X.Y.Z`` (the tag ``fulora data push`` makes is ``v<version>``).
            Default: the builder's data version. A released version never changes, so a release that
            grows (a config added) is exported into a new folder with a new version, e.g. the minor
            version bumped: ``1.0.0`` -> ``1.1.0``.
        **options: Builder options (``fulora_data.prepare.option_names``).

    Returns:
        The manifest written.

    Raises:
        ConfigError: For a folder that is not empty and not an export of this dataset and version.
    """
    from fulora_data.builders import get_builder_class
    from fulora_data.prepare import build, make_builder

    cls = get_builder_class(name)
    if version is not None and not re.fullmatch(r"\d+\.\d+\.\d+", str(version)):
        raise OptionValueError(f"--version must look like 1.1.0 (MAJOR.MINOR.PATCH), got {version!r}")
    # The real folder: a symlinked --out exports into its target, and "." or "sub/.." get a name.
    out = Path(out).expanduser().resolve()
    if out == Path.cwd() or out in Path.cwd().parents:
        raise OptionValueError(
            f"--out {out} is the current folder or holds it; export into a folder of its own"
        )
    if version is None:  # growing an export keeps its release version unless --version bumps it
        earlier = read_manifest(out) if out.is_dir() else None
        version = earlier.get("version") if isinstance(earlier, dict) else None
    version = str(version or cls.VERSION)
    if max_shard_size < 1:
        raise OptionValueError(f"max_shard_size must be positive, got {max_shard_size!r}")
    manifest = _check_target(out, name, version) or {
        "format": FORMAT,
        "name": name,
        "version": version,
        "configs": [],
        "details": {},
    }
    wanted = list(dict.fromkeys(configs or [cls.DEFAULT_CONFIG_NAME]))
    manifest["default_config"] = _default_config(cls, manifest, wanted, default_config)
    builders = [make_builder(name, c, source=source, cache_dir=cache_dir, **options) for c in wanted]
    built = [
        (builder, build(builder)) for builder in builders
    ]  # every build succeeds before a byte is written
    with export_lock(out):
        _recover(out)
        # Read again under the lock: another export may have added a config since the check above.
        manifest = _check_target(out, name, version) or manifest
        manifest["default_config"] = _default_config(cls, manifest, wanted, default_config)
        # The whole export is staged in a sibling folder and swapped in at once: a kill leaves the old
        # export (or nothing) at --out, plus a staging folder that the next run removes.
        with atomic_folder(out) as staging:
            _link_unchanged(out, staging, [b.config.name for b, _ in built])
            (staging / "data").mkdir(exist_ok=True)
            _write_configs(staging, name, built, manifest, options, max_shard_size, repo_id)
    return manifest


def _default_config(cls, manifest: dict, wanted: list[str], given: str | None) -> str:
    """The config ``load_dataset(REPO)`` loads: ``given``, else the folder's earlier one, else the builder's
    default if exported, else the first.

    Raises:
        ConfigError: If ``given`` is not among the folder's configs after this export.
    """
    every = list(dict.fromkeys([*manifest["configs"], *wanted]))
    if given is not None:
        if given not in every:
            raise ConfigError(
                f"--default-config {given!r} is not among the exported configs ({', '.join(every)})"
            )
        return given
    if manifest.get("default_config") in every:
        return manifest["default_config"]
    return cls.DEFAULT_CONFIG_NAME if cls.DEFAULT_CONFIG_NAME in every else every[0]


@contextlib.contextmanager
def export_lock(out: Path):
    """Hold an exclusive lock on an export folder (a ``filelock`` file beside it, ``.<name>.lock``).

    Two exports into one folder would otherwise each rewrite the manifest and card from what they read
    before the other finished, and disagree.

    Raises:
        ConfigError: If the lock file cannot be created (e.g. the parent folder is read-only).
    """
    from filelock import FileLock

    try:
        lock = FileLock(str(out.parent / f".{out.name}.lock"))
        lock.acquire()
    except OSError as err:
        raise ConfigError(f"cannot write the export folder --out {out}: {err.strerror or err}") from None
    try:
        yield
    finally:
        lock.release()


def _only_old_staging(out: Path) -> bool:
    """Whether a folder holds nothing but ``data/.<config>-*`` staging folders of a killed older export."""
    entries = list(out.iterdir())
    if [e.name for e in entries] != ["data"] or not entries[0].is_dir():
        return False
    return all(child.name.startswith(".") for child in entries[0].iterdir())


def _recover(out: Path) -> None:
    """Undo what a killed export left: staging siblings, and a swap interrupted between its two renames."""
    remove_leftovers(out.parent, out.name)
    if out.is_dir() and read_manifest(out) is None and any(out.iterdir()) and _only_old_staging(out):
        shutil.rmtree(out)
    previous = find_folder(out)
    if previous is not None and previous != out:
        os.replace(previous, out)
    shutil.rmtree(out.with_name(f".{out.name}.old"), ignore_errors=True)


def _link_unchanged(out: Path, staging: Path, rewritten: list[str]) -> None:
    """Put the existing export's files that this run keeps into the staging folder (hard links, or copies).

    Skipped: the configs being rewritten, and hidden leftovers of older fulora versions' in-folder staging.
    """
    if not out.is_dir():
        return
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out)
        hidden = any(part.startswith(".") for part in rel.parts) and rel.as_posix() != ".gitattributes"
        if (
            hidden
            or not path.is_file()
            or (rel.parts[0] == "data" and len(rel.parts) > 2 and rel.parts[1] in rewritten)
        ):
            continue
        target = staging / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)


def _write_configs(
    out: Path, name: str, built, manifest: dict, options: dict, max_shard_size: int, repo_id
) -> None:
    """Write each built config's shards, then the manifest and the card, all atomically."""
    from fulora_data.cards import render_card, summarize

    for builder, splits in built:
        config = builder.config.name
        # The card's statistics are Python work and the Parquet writer is C++ that releases the GIL: computing
        # them in a thread while the shards are written hides most of their cost.
        shard_list: dict[str, dict[str, Any]] = {}
        with ThreadPoolExecutor(max_workers=1) as pool:
            summary_job = pool.submit(summarize, builder, splits)
            written = {}
            staging = Path(tempfile.mkdtemp(prefix=f".{config}-", dir=out / "data"))
            try:
                for split, dataset in tqdm(splits.items(), desc=f"Export {name}/{config}", unit=" split"):
                    nbytes = hf.estimate_nbytes(dataset) if len(dataset) else 0
                    files = write_parquet_shards(
                        dataset, staging, split, max_shard_size=max_shard_size, nbytes=nbytes
                    )
                    written[split] = {
                        "files": [f"data/{config}/{f['file']}" for f in files],
                        "parquet_bytes": sum(f["num_bytes"] for f in files),
                        "num_bytes": nbytes,
                    }
                    for f in files:
                        shard_list[f"data/{config}/{f['file']}"] = {
                            "num_bytes": f["num_bytes"],
                            "sha256": f["sha256"],
                        }
                summary = summary_job.result()
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        try:
            for split, figures in written.items():
                summary["splits"][split].update(figures)
            target = out / "data" / config
            old = out / "data" / f".{config}-old-{os.getpid()}"
            if target.exists():
                target.rename(old)
            staging.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        # Every shard with its size and digest: `fulora data push` refuses a folder that differs from this.
        listed = {k: v for k, v in manifest.get("files", {}).items() if not k.startswith(f"data/{config}/")}
        listed.update(shard_list)
        manifest["files"] = dict(sorted(listed.items()))
        summary["options"] = {k: v for k, v in options.items() if v is not None}
        manifest["details"][config] = public(summary)
        if config not in manifest["configs"]:
            manifest["configs"].append(config)
        readme = out / "README.md"
        existing = readme.read_text(encoding="utf-8") if readme.is_file() else None
        for other, details in manifest["details"].items():
            details["default"] = other == manifest["default_config"]
        ordered = {c: manifest["details"][c] for c in manifest["configs"] if c in manifest["details"]}
        card = render_card(name, ordered, existing=existing, repo_id=repo_id, release=manifest["version"])
        # Key order is data here: a later export re-renders this config's card from the manifest, and the
        # card's features give load_dataset its column order (and the split order of the tables).
        atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2, default=str))
        atomic_write_text(readme, card)
