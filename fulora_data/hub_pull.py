"""Read what fulora publishes: Hub repo ids (``ORG/NAME[@REVISION]``) wherever fulora takes data or a model.

One naming rule for dataset repositories (:func:`dataset_repo_id`: dataset ``spanish`` is published as
``fulora/spanish``), used by exports, cards and docs.

:func:`resolve_model` and :func:`resolve_dataset` turn "a local path or a repo id" into a local folder:
an existing local path is returned as it is; anything else must be ``ORG/NAME[@REVISION]`` and is
downloaded (only the files needed) into the Hugging Face cache, or read from it with no network when
``HF_HUB_OFFLINE=1``. :func:`pull_dataset` and :func:`pull_model` are ``fulora data pull`` and
``fulora model pull``: the same download, pinned to the revision's commit, optionally into ``--local-dir``,
returning the ``load_dataset`` call that then works offline.

Offline, a pulled dataset is loaded from its local files, not by its repo id:
``load_dataset("parquet", data_files={split: "<folder>/data/<config>/<split>-*.parquet"})`` (the split
globs come from the card's YAML ``configs``; the features travel in the Parquet schema). ``datasets`` then
needs neither the Hub nor its own cache of an earlier online load, never looks for configs that were not
pulled, and cannot answer with another config's cached rows. fulora's commands take the repo id itself
offline (``fulora/hybrid@v1.0.0``): :func:`resolve_dataset` finds the pulled revision in the cache.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from fulora_data.dataset_ref import DatasetRef, RepoRef
from fulora_data.errors import ConfigError, DataError, FuloraError, SourceNotFoundError, redact
from fulora_data.io import file_sha256, one_writer, record_written, refuse_foreign_files

DEFAULT_ORG = "fulora"
MANIFEST = "fulora_export.json"
CARD = "README.md"
MODEL_KINDS = ("classifier", "adapter", "pipeline")
LOCAL_DIR_RECORD = ".cache/fulora/written.json"
"""Where a ``--local-dir`` records the files fulora wrote there (beside huggingface_hub's own
``.cache/huggingface``, so the folder shows only the repository's files)."""
_KIND_NAMES = {
    "classifier": "a fulora classifier",
    "adapter": "a LoRA adapter",
    "pipeline": "a diffusers pipeline",
}
# The command and option that take a pulled model of each kind (``fulora model pull`` prints it).
USE = {
    "classifier": "fulora evaluate --model {path}",
    "adapter": "fulora generate --adapter {path}",
    "pipeline": "fulora generate --base {path}",
}


class HubNotFoundError(SourceNotFoundError):
    """A repository, revision or file is not on the Hub (or not in the cache, offline)."""


def dataset_repo_id(name: str, org: str = DEFAULT_ORG) -> str:
    """The Hub repository a fulora dataset is published to: ``fulora/<name>`` (the one naming rule).

    Args:
        name: A dataset name (``fulora data list``), e.g. ``"hybrid"``.
        org: The Hub namespace.
    """
    return f"{org}/{name}"


def parse_repo_spec(spec: str, *, what: str = "repo id") -> tuple[str, str | None]:
    """Split ``ORG/NAME[@REVISION]`` into the repo id and the revision (``None``: the main branch).

    Raises:
        ConfigError: If the spec is not of that form (see :class:`fulora_data.dataset_ref.RepoRef`).
    """
    ref = RepoRef.parse(spec, option=what)
    return ref.repo_id, ref.revision


def is_repo_spec(value) -> bool:
    """Whether ``value`` is not an existing local path but reads as ``ORG/NAME[@REVISION]``."""
    return RepoRef.names_repo(value)


def offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` is set, read now (the Hub client reads it once, at import)."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")
    return env or bool(constants.HF_HUB_OFFLINE)


def _download(
    repo_id: str,
    repo_type: str,
    revision: str | None,
    *,
    allow_patterns: list[str] | None = None,
    local_dir: str | os.PathLike | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    pull_command: str,
) -> Path:
    """``snapshot_download`` with fulora's messages for a missing repo, revision or cache entry."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        HTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    label = f"{repo_id}@{revision}" if revision else repo_id
    kind = "dataset" if repo_type == "dataset" else "model"
    if local_dir is not None:
        names = _local_matches(Path(local_dir), allow_patterns)
        refuse_foreign_files(local_dir, names, "--local-dir", record_name=LOCAL_DIR_RECORD)
    try:
        path = snapshot_download(
            repo_id,
            repo_type=repo_type,
            revision=revision,
            allow_patterns=allow_patterns,
            local_dir=local_dir,
            token=token,
            endpoint=endpoint,
            local_files_only=offline(),
        )
    except RevisionNotFoundError:
        raise HubNotFoundError(
            f"{kind} repository {repo_id!r} has no revision {revision!r} (a tag, branch or commit)"
        ) from None
    except RepositoryNotFoundError:
        raise HubNotFoundError(
            f"there is no {kind} repository {repo_id!r} on the Hub (or it is private and needs a token), "
            "and no local path of that name"
        ) from None
    except LocalEntryNotFoundError:
        why = "HF_HUB_OFFLINE is set" if offline() else "the Hub could not be reached"
        raise HubNotFoundError(
            f"{label} is not in the local Hugging Face cache and {why}; run `{pull_command}` on a machine "
            "with access to the Hub first (then copy HF_HOME, or the --local-dir folder, here)"
        ) from None
    except (HfHubHTTPError, HTTPError, OSError) as err:
        raise FuloraError(f"downloading {label} from the Hub failed: {redact(' '.join(str(err).split()))}") from None
    folder = Path(path)
    files = _local_matches(folder, allow_patterns)
    fetch = {"repo_type": repo_type, "revision": revision, "local_dir": local_dir, "token": token}
    verify_download(folder, repo_id, files, pull_command=pull_command, endpoint=endpoint, **fetch)
    if local_dir is not None:
        record_written(local_dir, sorted(files), record_name=LOCAL_DIR_RECORD)
    return folder


def _local_matches(folder: Path, allow_patterns: list[str] | None) -> list[str]:
    """The files under ``folder`` a download with ``allow_patterns`` writes or reads (not its ``.cache``)."""
    from huggingface_hub.utils import filter_repo_objects

    if not folder.is_dir():
        return []
    every = [
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if (p.is_file() or p.is_symlink()) and not p.relative_to(folder).as_posix().startswith(".cache/")
    ]
    return list(filter_repo_objects(every, allow_patterns=allow_patterns))


def _recorded_id(folder: Path, rel: str) -> str | None:
    """The id the Hub gave a downloaded file: its blob's name in the cache, or the ``--local-dir`` etag.

    An LFS file's id is the sha256 of its content (64 hex digits); a regular file's is its git blob sha1.
    """
    path = folder / rel
    if path.is_symlink():  # the cache: snapshots/<commit>/<rel> -> ../../blobs/<id>
        name = Path(os.readlink(path)).name
        return name if re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", name) else None
    metadata = folder / ".cache" / "huggingface" / "download" / f"{rel}.metadata"
    try:  # huggingface_hub's local-dir record: commit, etag, timestamp
        lines = metadata.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    etag = lines[1].strip() if len(lines) > 1 else ""
    return etag if re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", etag) else None


_digests: dict[tuple, str] = {}  # (real path, size, mtime, inode, kind) -> digest: each file hashed once


def _content_id(path: Path, expected: str) -> str:
    """The file's sha256 (a 64-digit ``expected``) or git blob sha1 (40 digits), hashed once per version."""
    from huggingface_hub.utils.sha import git_hash

    real = path.resolve()
    stat = real.stat()
    key = (str(real), stat.st_size, stat.st_mtime_ns, stat.st_ino, len(expected))
    if key not in _digests:
        _digests[key] = file_sha256(real) if len(expected) == 64 else git_hash(real.read_bytes())
    return _digests[key]


def verify_download(
    folder: Path,
    repo_id: str,
    files,
    *,
    repo_type: str,
    revision: str | None,
    expected: dict[str, str] | None = None,
    local_dir=None,
    token=None,
    endpoint=None,
    pull_command: str,
) -> None:
    """Check every downloaded file before use; download a changed one again, or refuse.

    Each file is checked against ``expected`` (the release manifest's sha256) where it lists the file, else
    against the id the Hub gave it (an LFS blob is named by its sha256, a regular file by its git sha1).
    A file whose content differs (a tampered or damaged cache) is downloaded again with
    ``force_download``; offline, or when the fresh copy differs too, fulora refuses to use it.

    Raises:
        DataError: Naming the file that does not match and what to run.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, HTTPError

    expected = expected or {}
    for rel in sorted(files):
        want = expected.get(rel) or _recorded_id(folder, rel)
        path = folder / rel
        if want is None or _content_id(path, want) == want:
            continue
        digest = "sha256" if len(want) == 64 else "git blob sha1"
        if not offline():
            try:
                hf_hub_download(
                    repo_id,
                    rel,
                    repo_type=repo_type,
                    revision=revision,
                    local_dir=local_dir,
                    token=token,
                    endpoint=endpoint,
                    force_download=True,
                )
            except (HfHubHTTPError, HTTPError, OSError) as err:
                raise FuloraError(
                    f"{repo_id}: the cached {rel} does not match its {digest} and downloading it again "
                    f"failed: {redact(' '.join(str(err).split()))}"
                ) from None
            if _content_id(path, want) == want:
                continue
            raise DataError(
                f"{repo_id}: {rel} does not match its {digest} {want[:12]}... even when downloaded again; "
                "the repository's files differ from its manifest, refusing to use them"
            )
        raise DataError(
            f"{repo_id}: the cached {rel} does not match its {digest} {want[:12]}... (changed or damaged "
            f"since it was downloaded); run `{pull_command}` with access to the Hub to download it again"
        )


# ---------------------------------------------------------------------- models
def model_kind(folder: str | os.PathLike) -> str:
    """What a model folder holds: ``classifier``, ``adapter``, ``pipeline`` or ``unknown``."""
    from fulora_data.adapter import DIFFUSERS_FILE, find_kohya_file

    folder = Path(folder)
    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        try:
            if "arch" in json.loads((folder / "config.json").read_text(encoding="utf-8")):
                return "classifier"
        except (OSError, ValueError):
            pass
    if (folder / DIFFUSERS_FILE).is_file() or find_kohya_file(folder) is not None:
        return "adapter"
    if (folder / "model_index.json").is_file():
        return "pipeline"
    if _has_lora_file(folder):  # a LoRA made elsewhere (kohya/A1111 or diffusers keys), e.g. the study's
        return "adapter"
    return "unknown"


def _has_lora_file(folder: Path) -> bool:
    """Whether a top-level ``.safetensors`` file's header (read without torch) holds LoRA keys."""
    from fulora_data.adapter import key_format, read_safetensors_header

    for path in sorted(folder.glob("*.safetensors")):
        try:
            tensors, _, _ = read_safetensors_header(path)
        except (DataError, OSError):
            continue
        if key_format(tensors) != "unknown":
            return True
    return False


def _describe(folder: Path) -> str:
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    shown = ", ".join(files[:6]) + (f" and {len(files) - 6} more" if len(files) > 6 else "")
    if (folder / "config.json").is_file():
        try:
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            what = config.get("model_type") or (config.get("architectures") or [None])[0]
            if what:
                return f"a {what} model (config.json), not made by fulora"
        except (OSError, ValueError, AttributeError):
            pass
    return f"not a fulora model: it holds {shown or 'no files'}"


def resolve_model(
    spec: str | os.PathLike,
    kind: str | None = None,
    *,
    token: str | None = None,
    endpoint: str | None = None,
) -> Path:
    """A local model path, or a Hub model repo ``ORG/NAME[@REVISION]`` downloaded to the cache: a local path.

    Args:
        spec: A local file or folder (returned as it is), or a repo id with an optional revision.
        kind: ``classifier``, ``adapter`` or ``pipeline``: a downloaded repo must hold that; None accepts any.
        token: Hub token for private repositories.
        endpoint: Hub URL (default ``HF_ENDPOINT``).

    Returns:
        The local path: ``spec`` itself when it exists, else the downloaded snapshot folder.

    Raises:
        SourceNotFoundError: If ``spec`` is neither an existing path nor a repo on the Hub (or in the cache
            offline), or the revision does not exist.
        ConfigError: If ``spec`` is neither a path nor ``ORG/NAME[@REVISION]``.
        DataError: If the repository holds another kind of model.
    """
    if kind is not None and kind not in MODEL_KINDS:
        raise ConfigError(f"model kind must be one of {', '.join(MODEL_KINDS)}, got {kind!r}")
    local = Path(str(spec)).expanduser()
    if local.exists():
        return local
    if not is_repo_spec(spec):
        raise SourceNotFoundError(
            f"model {str(spec)!r} does not exist locally and is not a Hub repo id 'ORG/NAME[@REVISION]'"
        )
    repo_id, revision = parse_repo_spec(str(spec), what="model")
    folder = _download(
        repo_id, "model", revision, token=token, endpoint=endpoint, pull_command=f"fulora model pull {spec}"
    )
    found = model_kind(folder)
    if kind is not None and found != kind:
        what = _KIND_NAMES.get(found) or _describe(folder)
        raise DataError(f"Hub repo {str(spec)!r} is {what}, not {_KIND_NAMES[kind]}")
    return folder


@one_writer("local_dir", "--local-dir")
def pull_model(
    spec: str,
    *,
    revision: str | None = None,
    local_dir: str | os.PathLike | None = None,
    token: str | None = None,
    endpoint: str | None = None,
) -> dict[str, Any]:
    """Download a model repository (classifier, adapter or pipeline) at a pinned revision.

    Args:
        spec: ``ORG/NAME[@REVISION]``.
        revision: A tag, branch or commit (overrides ``@REVISION``).
        local_dir: Download into this folder instead of the Hugging Face cache.
        token: Hub token for private repositories.
        endpoint: Hub URL.

    Returns:
        ``{"repo_id", "revision", "commit", "path", "kind", "use"}``; ``use`` is the command and option
        that then take it offline (``fulora generate --adapter PATH`` for an adapter, see ``USE``).
    """
    repo_id, rev = parse_repo_spec(spec, what="model")
    revision = revision or rev
    commit = _pin(repo_id, "model", revision, token, endpoint)
    folder = _download(
        repo_id,
        "model",
        revision,
        local_dir=local_dir,
        token=token,
        endpoint=endpoint,
        pull_command=f"fulora model pull {spec}",
    )
    kind = model_kind(folder)
    return {
        "repo_id": repo_id,
        "revision": revision or "main",
        "commit": commit,
        "path": str(folder),
        "kind": kind,
        "use": USE.get(kind, "{path}").format(path=folder),
    }


def _pin(repo_id: str, repo_type: str, revision: str | None, token, endpoint) -> str:
    """The commit a revision points at now (offline: the one the cache recorded for it)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (
        HfHubHTTPError,
        HTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    kind = "dataset" if repo_type == "dataset" else "model"
    if offline():
        folder = _download(
            repo_id,
            repo_type,
            revision,
            allow_patterns=[CARD],
            pull_command=f"fulora {'data' if kind == 'dataset' else 'model'} pull {repo_id}",
        )
        return folder.name
    try:
        info = HfApi(endpoint=endpoint, token=token).repo_info(
            repo_id, repo_type=repo_type, revision=revision
        )
    except RevisionNotFoundError:
        raise HubNotFoundError(
            f"{kind} repository {repo_id!r} has no revision {revision!r} (a tag, branch or commit)"
        ) from None
    except RepositoryNotFoundError:
        raise HubNotFoundError(
            f"there is no {kind} repository {repo_id!r} on the Hub (or it is private and needs a token)"
        ) from None
    except (HfHubHTTPError, HTTPError, OSError) as err:
        raise FuloraError(f"could not reach the Hub for {repo_id}: {redact(' '.join(str(err).split()))}") from None
    return info.sha


# ---------------------------------------------------------------------- datasets
def _card_configs(folder: Path) -> tuple[list[str], str | None]:
    """The configs a dataset card's YAML lists, and the default one."""
    from huggingface_hub import DatasetCard

    card = folder / CARD
    if not card.is_file():
        return [], None
    data = DatasetCard(card.read_text(encoding="utf-8")).data.to_dict()
    configs = data.get("configs") or []
    names = [c.get("config_name", "default") for c in configs if isinstance(c, dict)]
    default = next((c.get("config_name") for c in configs if isinstance(c, dict) and c.get("default")), None)
    if default is None and len(names) == 1:
        default = names[0]
    return names, default


def _dataset_patterns(folder: Path, spec: str, configs: list[str]) -> tuple[list[str], list[str], str | None]:
    names, default = _card_configs(folder)
    if not names:
        raise DataError(f"Hub dataset {spec!r} is not a fulora export: its README.md lists no configs")
    unknown = [c for c in configs if c not in names]
    if unknown:
        raise ConfigError(f"Hub dataset {spec!r} has no config {unknown[0]!r}; it has {', '.join(names)}")
    wanted = configs or names
    return [CARD, MANIFEST, *(f"data/{c}/*" for c in wanted)], wanted, default


def resolve_dataset(
    spec: str,
    configs: list[str] | tuple[str, ...] | None = None,
    *,
    token: str | None = None,
    endpoint: str | None = None,
    local_dir: str | os.PathLike | None = None,
) -> Path:
    """Download (or find in the cache, offline) the card and Parquet files of configs of a Hub dataset.

    Args:
        spec: ``ORG/NAME[@REVISION]`` of a dataset repository (a fulora export).
        configs: The configs needed; empty or None: all of them.
        token: Hub token for private repositories.
        endpoint: Hub URL.
        local_dir: Download into this folder instead of the Hugging Face cache.

    Returns:
        A local folder that ``datasets.load_dataset(folder, config)`` reads with no network.

    Raises:
        ConfigError: For a malformed spec or a config the repository does not have.
        SourceNotFoundError: If the repo, revision or (offline) cached files are missing.
    """
    repo_id, revision = parse_repo_spec(spec, what="dataset")
    return _fetch_dataset(repo_id, revision, list(configs or []), token, endpoint, local_dir)[0]


def _fetch_dataset(
    repo_id, revision, configs, token, endpoint, local_dir
) -> tuple[Path, list[str], str | None]:
    label = f"{repo_id}@{revision}" if revision else repo_id
    pull = f"fulora data pull {label}" + "".join(f" -c {c}" for c in configs)
    common = {"local_dir": local_dir, "token": token, "endpoint": endpoint, "pull_command": pull}
    card = _download(repo_id, "dataset", revision, allow_patterns=[CARD, MANIFEST], **common)
    patterns, wanted, default = _dataset_patterns(card, label, configs)
    folder = _download(repo_id, "dataset", revision, allow_patterns=patterns, **common)
    shards = _manifest_sha256(folder, wanted)
    verify_download(
        folder,
        repo_id,
        list(shards),
        repo_type="dataset",
        revision=revision,
        expected=shards,
        local_dir=local_dir,
        token=token,
        endpoint=endpoint,
        pull_command=pull,
    )
    missing = [c for c in wanted if not any((folder / "data" / c).glob("*.parquet"))]
    if missing:
        raise HubNotFoundError(
            f"{label}: config {missing[0]!r} is not in the local cache (HF_HUB_OFFLINE is set); run "
            f"`fulora data pull {label} -c {missing[0]}` on a machine with access to the Hub first"
            if offline()
            else f"{label}: config {missing[0]!r} has no Parquet files under data/{missing[0]}/"
        )
    return folder, wanted, default


def _manifest_sha256(folder: Path, configs: list[str]) -> dict[str, str]:
    """``{path: sha256}`` of the wanted configs' shards, from the release manifest ``fulora_export.json``.

    Raises:
        DataError: If the manifest lists a shard of a wanted config that is not in the download.
    """
    try:
        listed = json.loads((folder / MANIFEST).read_text(encoding="utf-8")).get("files")
    except (OSError, ValueError, AttributeError):
        return {}  # an older export without a shard list: the Hub's own ids are still checked
    if not isinstance(listed, dict):
        return {}
    shards = {
        rel: entry["sha256"]
        for rel, entry in listed.items()
        if isinstance(entry, dict)
        and isinstance(entry.get("sha256"), str)
        and any(rel.startswith(f"data/{c}/") for c in configs)
    }
    absent = [rel for rel in shards if not (folder / rel).is_file()]
    if absent:
        raise DataError(f"{MANIFEST} lists {absent[0]!r} but the download lacks it; pull the dataset again")
    return shards


def load_repo_dataset(
    spec: str,
    config: str | None = None,
    *,
    token: str | None = None,
    endpoint: str | None = None,
):
    """Load a config of a published fulora dataset (``ORG/NAME[@REVISION]``) as a ``DatasetDict``.

    The files come from :func:`resolve_dataset`, so this works offline once the config was pulled.

    Args:
        spec: ``ORG/NAME[@REVISION]``.
        config: The config; None: the repository's default config.

    Raises:
        ConfigError: If ``config`` is None and the repository has several configs but no default.
    """
    return open_repo_dataset(spec, config, token=token, endpoint=endpoint)[0]


def open_repo_dataset(
    spec: str,
    config: str | None = None,
    *,
    token: str | None = None,
    endpoint: str | None = None,
) -> tuple[Any, dict[str, Any]]:
    """:func:`load_repo_dataset`, and what was loaded: ``{"repo", "revision", "commit", "config"}``.

    ``revision`` is the one asked for (None: the main branch), ``commit`` the commit the files are (None
    if unknown), ``config`` the config read (the card's default when ``config`` is None): what a run
    trained on the data records, so that its card names the very data.
    """
    import datasets

    repo_id, revision = parse_repo_spec(spec, what="dataset")
    if config is None:  # the card says which config is the default; only that one is downloaded
        card = _download(
            repo_id,
            "dataset",
            revision,
            allow_patterns=[CARD, MANIFEST],
            token=token,
            endpoint=endpoint,
            pull_command=f"fulora data pull {spec}",
        )
        names, config = _card_configs(card)
        if config is None:
            raise ConfigError(f"Hub dataset {spec!r} has configs {', '.join(names)} and no default; name one")
    folder, _, _ = _fetch_dataset(repo_id, revision, [config], token, endpoint, None)
    # A download into the Hugging Face cache lands in snapshots/<commit>.
    commit = folder.name if re.fullmatch(r"[0-9a-f]{40}", folder.name) else None
    info = {"repo": repo_id, "revision": revision, "commit": commit, "config": config}
    return datasets.load_dataset("parquet", data_files=data_files(folder, config)), info


def data_files(folder: str | os.PathLike, config: str) -> dict[str, str]:
    """``{split: glob}`` of one config's Parquet files in a pulled export folder, from its card.

    ``load_dataset("parquet", data_files=...)`` reads exactly these files (the features travel in the
    Parquet schema), so configs that were not pulled are never looked for, and nothing else is read.
    """
    from huggingface_hub import DatasetCard

    folder = Path(folder)
    entries = DatasetCard((folder / CARD).read_text(encoding="utf-8")).data.to_dict().get("configs") or []
    entry = next((e for e in entries if isinstance(e, dict) and e.get("config_name") == config), None)
    if entry is None:
        raise ConfigError(f"{folder / CARD} lists no config {config!r}")
    found = entry.get("data_files") or []
    found = [found] if isinstance(found, (str, dict)) else found
    files = {}
    for item in found:
        split, path = (
            (item.get("split", "train"), item.get("path")) if isinstance(item, dict) else ("train", item)
        )
        path = path[0] if isinstance(path, list) and len(path) == 1 else path
        if not isinstance(path, str):
            raise DataError(f"{folder / CARD}: config {config!r} has data_files fulora cannot read: {item!r}")
        files[split] = str(folder / path)
    return files


@one_writer("local_dir", "--local-dir")
def pull_dataset(
    spec: str,
    configs: list[str] | tuple[str, ...] | None = None,
    *,
    revision: str | None = None,
    local_dir: str | os.PathLike | None = None,
    token: str | None = None,
    endpoint: str | None = None,
) -> dict[str, Any]:
    """Download the card and the Parquet files of some configs of a Hub dataset, pinned to one commit.

    Args:
        spec: ``ORG/NAME[@REVISION]``.
        configs: Configs to download; empty or None: all of them.
        revision: A tag, branch or commit (overrides ``@REVISION``); default: the main branch.
        local_dir: Download into this folder instead of the Hugging Face cache.
        token: Hub token for private repositories.
        endpoint: Hub URL.

    Returns:
        ``{"repo_id", "revision", "commit", "path", "configs", "default_config", "load"}``: ``load`` is the
        Python call that then loads the default (or first) config with ``HF_HUB_OFFLINE=1
        HF_DATASETS_OFFLINE=1``: ``load_dataset('parquet', data_files={split: "<path>/data/<config>/..."})``.
    """
    repo_id, rev = parse_repo_spec(spec, what="dataset")
    revision = revision or rev
    commit = _pin(repo_id, "dataset", revision, token, endpoint)
    # Downloaded by the revision's name, not its commit, so the cache records the name and a later offline
    # `ORG/NAME@REVISION` finds it; the commit is reported, and is what the files are.
    folder, wanted, default = _fetch_dataset(
        repo_id, revision, list(configs or []), token, endpoint, local_dir
    )
    example = default if default in wanted else wanted[0]
    files = data_files(folder, example)
    return {
        "repo_id": repo_id,
        "revision": revision or "main",
        "commit": commit,
        "path": str(folder),
        "configs": wanted,
        "default_config": default,
        "load": f"load_dataset('parquet', data_files={files!r})",
    }


def load_training_splits(spec: str, *, token: str | None = None, endpoint: str | None = None):
    """The train and validation splits of a published training set ``ORG/NAME[@REVISION][/CONFIG]``.

    For ``fulora train classifier --data``: a published hybrid (``fulora/hybrid@v1.0.0``) trains on its
    ``train`` split and validates on its patient-grouped ``validation`` split when it has one.

    Returns:
        ``(train, validation or None, info)``: ``info`` is what :func:`open_repo_dataset` says was loaded.

    Raises:
        ConfigError: For a malformed spec, or a config with no ``train`` split.
    """
    ref = DatasetRef.parse(spec, option="--data", split="none", hub_only=True)
    splits, info = open_repo_dataset(ref.repo, ref.config, token=token, endpoint=endpoint)
    if "train" not in splits:
        raise ConfigError(f"--data {spec!r} has no train split; it has {', '.join(splits)}")
    return splits["train"], splits.get("validation"), info
