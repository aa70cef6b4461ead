"""Publish fulora datasets and models to the Hugging Face Hub, each release under a tag that never moves.

A dataset release is a folder written by ``fulora data export``: ``README.md`` (the card, whose YAML
``configs`` tell ``datasets`` where the Parquet shards are), ``data/<config>/<split>-*.parquet`` and the
manifest ``fulora_export.json`` (``name``, ``version``, ``configs``). Once pushed and tagged ``v<version>``,
``datasets.load_dataset("fulora/NAME", CONFIG)`` and ``load_dataset(..., revision="v1.0.0")`` read it
with no script. A model release is a folder with a ``README.md`` model card and safetensors weights.

Uploads go through ``HfApi.upload_folder``: large files travel by LFS (or Xet), the Hub is asked first which
blobs it already holds, so running a failed push again resumes it, and an unchanged folder makes no commit.
A large release (more than ``LARGE_RELEASE_FILES`` files or ``LARGE_RELEASE_BYTES`` bytes) is pre-uploaded in
chunks and then committed once (``_upload_in_chunks`` explains why). File selection and hashing use
huggingface_hub's own ignore rules and hash helpers.
``HF_ENDPOINT`` (or ``endpoint=``) chooses the Hub; the token comes from ``token=``, ``HF_TOKEN`` or
``hf auth login``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import tempfile
from pathlib import Path

from fulora_data.errors import ConfigError, DataError, FuloraError, SourceNotFoundError, redact

logger = logging.getLogger(__name__)

MANIFEST = "fulora_export.json"
CARD = "README.md"
PLACEHOLDER = "REPO_OR_FOLDER"
"""What a model card's code snippet says where the repository id goes until the model is pushed:
``push_model`` replaces the quoted placeholder with the repo id it pushes to, in the folder's card."""
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
_TAG = re.compile(r"[A-Za-z0-9][\w.-]*")


class HubError(FuloraError):
    """The Hub refused a push, or could not be reached; the message says what to do next."""


def read_export_manifest(folder: str | Path) -> dict:
    """Check that a folder is a Hub-ready fulora dataset export and return its manifest.

    Args:
        folder: The folder written by ``fulora data export``.

    Returns:
        The manifest, with ``configs`` normalised to a list of config names.

    Raises:
        SourceNotFoundError: If the folder does not exist.
        DataError: If the card or manifest is missing or malformed, or a config has no Parquet shards.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SourceNotFoundError(f"export folder {str(folder)!r} does not exist or is not a folder")
    for required in (CARD, MANIFEST):
        if not (folder / required).is_file():
            raise DataError(
                f"{str(folder)!r} is not a fulora dataset export: {required} is missing (write it with `fulora data export`)"
            )
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise DataError(f"{folder / MANIFEST} is not valid JSON: {err}") from None
    if not isinstance(manifest, dict):
        raise DataError(f"{folder / MANIFEST} must hold a JSON object, got {type(manifest).__name__}")
    missing = [key for key in ("name", "version", "configs") if key not in manifest]
    if missing:
        raise DataError(f"{folder / MANIFEST} lacks {', '.join(missing)}")
    version = manifest["version"]
    if not (isinstance(version, str) and re.fullmatch(r"\d+\.\d+\.\d+", version)):
        raise DataError(f"{folder / MANIFEST}: version must look like '1.0.0', got {version!r}")
    configs = manifest["configs"]
    if isinstance(configs, dict):
        configs = list(configs)
    if not isinstance(configs, list) or not configs:
        raise DataError(f"{folder / MANIFEST}: configs must be a non-empty list, got {configs!r}")
    names = [c.get("config_name", c.get("name")) if isinstance(c, dict) else c for c in configs]
    for name in names:
        if not (isinstance(name, str) and _TAG.fullmatch(name)):
            raise DataError(f"{folder / MANIFEST}: bad config name {name!r}")
        if not any((folder / "data" / name).glob("*.parquet")):
            raise DataError(f"{str(folder)!r} has no Parquet shards for config {name!r} under data/{name}/")
    _verify_listed_files(folder, manifest)
    return {**manifest, "configs": names}


def _verify_listed_files(folder: Path, manifest: dict) -> None:
    """Refuse a folder whose files differ from the manifest's shard list (sizes and sha256 included).

    A deleted, truncated or stray shard (a leftover of a killed export) would otherwise be pushed under a
    tag that never moves, and ``load_dataset`` would fail on it or read it as data.
    """
    where = folder / MANIFEST
    listed = manifest.get("files")
    if not isinstance(listed, dict) or not listed:
        raise DataError(
            f"{where} lists no shards with their sizes and sha256 (an export from an older fulora); "
            "export the dataset again with `fulora data export`"
        )
    local = {rel for rel in _local_files(folder) if rel not in (CARD, MANIFEST, ".gitattributes")}
    # The manifest vouches for the data; files beside it outside data/ (an attached `fulora data compare`
    # report, figures) are the publisher's to add and go up as they are.
    stray = sorted(rel for rel in local - set(listed) if rel.startswith("data/"))
    if stray:
        raise DataError(
            f"{str(folder)!r} holds {len(stray)} files that {MANIFEST} does not list (first: {stray[0]!r}); "
            "remove them or export again"
        )
    for rel, entry in listed.items():
        path = folder / rel
        if rel not in local:
            raise DataError(f"{str(folder)!r} lacks {rel!r}, which {MANIFEST} lists; export again")
        size = entry.get("num_bytes") if isinstance(entry, dict) else None
        if path.stat().st_size != size:
            raise DataError(
                f"{path} has {path.stat().st_size} bytes but {MANIFEST} says {size!r}: it is truncated or "
                "changed; export again"
            )
        if _local_id(path, lfs=True) != entry.get("sha256"):
            raise DataError(f"{path} does not match its sha256 in {MANIFEST}: it changed; export again")


def push_dataset(
    folder: str | Path,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    tag: str | None = None,
    endpoint: str | None = None,
    commit_message: str | None = None,
) -> dict:
    """Push a dataset export folder to a Hub dataset repository and tag the commit.

    The repository is created if needed. The folder is authoritative: files on the Hub that the folder does
    not have (a stale shard, which ``load_dataset`` would read as data, or a config this release dropped)
    are deleted in the same commit, so the tagged commit holds exactly this export and its card lists every
    config in it. Earlier releases stay readable at their own tags. ``.gitattributes`` is kept.

    Args:
        folder: The folder written by ``fulora data export``.
        repo_id: The dataset repository, e.g. ``"fulora/synthetic"``.
        token: A Hub token with write access; default: ``HF_TOKEN`` or the ``hf auth login`` token.
        private: Create the repository as private (an existing repository keeps its visibility).
        tag: The release tag; default ``v<version>`` from the manifest.
        endpoint: The Hub URL; default ``HF_ENDPOINT`` or https://huggingface.co.
        commit_message: The commit summary; default names the dataset, configs and tag.

    Returns:
        ``{"repo_id", "commit", "tag", "url", "pushed"}``; ``pushed`` is False when the tag already
        pointed at identical content and nothing was uploaded.

    Raises:
        SourceNotFoundError, DataError: If the folder is not a fulora export.
        ConfigError: If ``repo_id`` or ``tag`` is malformed.
        HubError: If the tag exists with different content, the token is refused, or the upload fails.
    """
    manifest = read_export_manifest(folder)
    tag = tag or f"v{manifest['version']}"
    message = (
        commit_message or f"Upload {manifest['name']} {tag} ({', '.join(manifest['configs'])}) with fulora"
    )
    # Not only this export's configs: a config left behind would sit under the new tag with the old
    # version's data, unlisted in the new card and manifest, so load_dataset could not reach it.
    delete_patterns = ["*"]
    return _push(Path(folder), repo_id, "dataset", token, private, tag, endpoint, message, delete_patterns)


def push_model(
    folder: str | Path,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    tag: str | None = None,
    endpoint: str | None = None,
    commit_message: str | None = None,
    retry_hint: str | None = None,
) -> dict:
    """Push a model folder (a LoRA adapter or a classifier) to a Hub model repository, optionally tagged.

    The card's snippets name the repository: where they say ``"REPO_OR_FOLDER"`` (``PLACEHOLDER``), the
    folder's ``README.md`` is rewritten with ``repo_id`` before the upload (nothing else in it changes).

    Args:
        folder: A folder with a ``README.md`` model card and at least one ``.safetensors`` file.
        repo_id: The model repository, e.g. ``"fulora/sd15-lora-r128"``.
        token: A Hub token with write access; default: ``HF_TOKEN`` or the ``hf auth login`` token.
        private: Create the repository as private (an existing repository keeps its visibility).
        tag: A release tag for the commit; a tag never moves. Default: no tag.
        endpoint: The Hub URL; default ``HF_ENDPOINT`` or https://huggingface.co.
        commit_message: The commit summary.
        retry_hint: What a failed upload's message advises (default: run the same command again, which
            resumes it); a caller whose command would not push again names one that does.

    Returns:
        ``{"repo_id", "commit", "tag", "url", "pushed"}``.

    Raises:
        SourceNotFoundError, DataError: If the folder lacks the card or the weights.
        ConfigError: If ``repo_id`` or ``tag`` is malformed.
        HubError: If the tag exists with different content, the token is refused, or the upload fails.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SourceNotFoundError(f"model folder {str(folder)!r} does not exist or is not a folder")
    files, skipped = model_files(folder)
    if CARD not in files:
        raise DataError(f"model folder {str(folder)!r} has no {CARD} model card")
    if not any(rel.endswith(".safetensors") for rel in files):
        raise DataError(f"model folder {str(folder)!r} has no .safetensors weights")
    for rel, why in skipped.items():
        logger.warning("not uploading %s: %s", rel, why)
    message = commit_message or f"Upload {folder.name} with fulora" + (f" ({tag})" if tag else "")
    with _named_card_view(folder, files, repo_id) as view:
        result = _push(
            view, repo_id, "model", token, private, tag, endpoint, message, None, retry_hint, only=set(files)
        )
    return {**result, "skipped": skipped}


@contextlib.contextmanager
def _named_card_view(folder: Path, files: list[str], repo_id: str):
    """The folder as it goes up: its card's ``"REPO_OR_FOLDER"`` snippets naming ``repo_id``.

    The folder itself is never changed (a trained adapter's bytes are its identity, e.g. in ``fulora
    study``): when the card needs the repo id, the upload reads a view in the system's temporary folder
    whose files are links to the originals, beside the rewritten card.
    """
    card = _name_repo_in_card(folder / CARD, repo_id)
    if card is None:
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="fulora-push-") as tmp:
        view = Path(tmp) / folder.name
        for rel in files:
            target = view / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if rel == CARD:
                target.write_text(card, encoding="utf-8")
            else:
                target.symlink_to((folder / rel).resolve())
        yield view


def _name_repo_in_card(card: Path, repo_id: str) -> str | None:
    """The card's text with the repo id where its snippets say ``"REPO_OR_FOLDER"``; None when unchanged
    (no placeholder, or an id ``_push`` refuses with its reason)."""
    try:
        check_repo_id(repo_id)
    except ConfigError:
        return None
    text = card.read_text(encoding="utf-8")
    quoted = f'"{PLACEHOLDER}"'
    return text.replace(quoted, f'"{repo_id}"') if quoted in text else None


MODEL_FILE_PATTERNS = (
    "*.safetensors",  # weights: never pickles (.bin, .pt, .ckpt), which run code when loaded
    "*.json",  # config.json, model_index.json, eval_results.json, scheduler and tokenizer configs
    "*.md",  # the card, reports
    "*.txt",  # tokenizer merges and vocabularies
    "*.yaml",
    "*.yml",
    "*.png",  # sample grids, widget images, figures
    "*.jpg",
    "*.jpeg",
    "*.webp",
)
"""What a model folder (an adapter, a classifier, a diffusers pipeline) is made of: ``model push``
uploads only these, never a dotfile, anything in a dot-folder, or a link that reaches outside the folder."""


def model_files(folder: str | Path) -> tuple[list[str], dict[str, str]]:
    """Split a model folder's files into those ``model push`` uploads and those it skips (with why).

    Returns:
        ``(files, skipped)``: the relative paths to upload, sorted, and ``{relative path: reason}``.
    """
    import fnmatch

    folder = Path(folder)
    root = folder.resolve()
    files, skipped = [], {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if any(part.startswith(".") for part in Path(rel).parts):
            if path.is_file() or path.is_symlink():
                skipped[rel] = "a dotfile or inside a dot-folder (secrets, caches, git)"
            continue
        if path.is_dir() and not path.is_symlink():
            continue
        target = path.resolve()
        if not target.is_relative_to(root):
            skipped[rel] = "a link to a place outside the model folder"
            continue
        if not target.is_file():
            continue
        if not any(fnmatch.fnmatch(path.name.lower(), pattern) for pattern in MODEL_FILE_PATTERNS):
            skipped[rel] = "not a model file (" + ", ".join(MODEL_FILE_PATTERNS) + ")"
            continue
        files.append(rel)
    return files, skipped


def check_repo_id(repo_id) -> None:
    """Refuse a repository id the Hub would refuse.

    Raises:
        ConfigError: Quoting the id and the rule it breaks.
    """
    if (
        not isinstance(repo_id, str)
        or not _REPO_ID.fullmatch(repo_id)
        or "--" in repo_id
        or ".." in repo_id
        or any(part.endswith((".", "-")) or len(part) > 96 for part in repo_id.split("/"))
    ):
        raise ConfigError(
            f"repo id must look like 'namespace/name', got {repo_id!r} (letters, digits, '-', '_', '.'; no "
            "'--' or '..'; not ending in '-' or '.'; at most 96 characters each)"
        )


def _whoami(api) -> dict:
    from huggingface_hub.errors import HfHubHTTPError, HTTPError, LocalTokenNotFoundError

    shown = _redact(api.endpoint)
    try:
        return api.whoami()
    except LocalTokenNotFoundError:
        raise HubError("no Hugging Face token: pass --token, set HF_TOKEN or run `hf auth login`") from None
    except HfHubHTTPError as err:
        raise HubError(f"the Hub at {shown} refused the token: {_reason(err)}") from None
    except (HTTPError, OSError) as err:
        if getattr(getattr(err, "response", None), "status_code", None) in (401, 403):
            # huggingface_hub 0.26 raises a plain HTTPError (not HfHubHTTPError) for a refused token
            raise HubError(f"the Hub at {shown} refused the token: {_reason(err)}") from None
        raise HubError(f"could not reach the Hub at {shown}: {_reason(err)}") from None


def check_push_target(repo_id: str, *, token: str | None = None, endpoint: str | None = None) -> str:
    """Check, before the work whose result is pushed, that a push to ``repo_id`` can succeed.

    The id's form, a token (``token``, ``HF_TOKEN`` or the login), the Hub's ``whoami`` for it, a token
    that may write (not a read token) and a namespace the token's user may write to (the user or one of
    their organisations). Nothing is created on the Hub.

    Returns:
        The Hub user the token belongs to.

    Raises:
        ConfigError: For a malformed repository id.
        HubError: For a missing or refused token, an unreachable Hub, a read-only token or a namespace the
            user cannot write to.
    """
    from huggingface_hub import HfApi

    check_repo_id(repo_id)
    api = HfApi(endpoint=endpoint, token=token)
    info = _whoami(api)
    user = str(info.get("name") or "")
    role = ((info.get("auth") or {}).get("accessToken") or {}).get("role")
    if role == "read":
        raise HubError(f"the Hub token of {user!r} is read-only; pushing to {repo_id} needs a write token")
    namespaces = {user, *(org.get("name") for org in info.get("orgs") or [] if isinstance(org, dict))}
    namespace = repo_id.split("/", 1)[0]
    if namespace not in namespaces:
        raise HubError(
            f"the Hub user {user!r} cannot create repositories under {namespace!r} (it can write to "
            f"{', '.join(sorted(n for n in namespaces if n))})"
        )
    return user


def _push(
    folder: Path,
    repo_id,
    repo_type,
    token,
    private,
    tag,
    endpoint,
    message,
    delete_patterns,
    retry_hint=None,
    only=None,
) -> dict:
    """Push ``folder`` (only the files ``only`` names, when given: relative paths) to ``repo_id``."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HTTPError

    check_repo_id(repo_id)
    if tag is not None and not (isinstance(tag, str) and _TAG.fullmatch(tag)):
        raise ConfigError(f"tag must be letters, digits, '.', '_' or '-', got {tag!r}")
    api = HfApi(endpoint=endpoint, token=token)
    shown = _redact(api.endpoint)  # an endpoint may carry user:password@; messages never show it
    where = f"{repo_id} on {shown}"
    _whoami(api)  # fail on a missing or refused token before hashing gigabytes
    try:
        url = str(api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True))
        if tag is not None:
            tagged = {
                ref.name: ref.target_commit for ref in api.list_repo_refs(repo_id, repo_type=repo_type).tags
            }
            if tag in tagged:
                if not _same_content(api, folder, repo_id, repo_type, tagged[tag], only):
                    raise HubError(
                        f"tag {tag!r} of {where} points at commit {tagged[tag][:10]} with different content, and a tag "
                        "never moves: bump the version or choose another tag"
                    )
                logger.info("Tag %s of %s already points at identical content; nothing pushed.", tag, where)
                return {"repo_id": repo_id, "commit": tagged[tag], "tag": tag, "url": url, "pushed": False}
        logger.info("Uploading %s to %s", folder, where)
        if _is_large(folder, only):
            commit = _upload_in_chunks(
                api, folder, repo_id, repo_type, message, delete_patterns is not None, only
            )
        else:
            commit = api.upload_folder(
                repo_id=repo_id,
                folder_path=folder,
                repo_type=repo_type,
                commit_message=message,
                delete_patterns=delete_patterns,
                # exact names (fnmatch's specials escaped), so nothing outside the selection goes up
                allow_patterns=None if only is None else [re.sub(r"([*?[])", r"[\1]", rel) for rel in only],
            )
        if tag is not None:
            api.create_tag(repo_id, tag=tag, revision=commit.oid, repo_type=repo_type, tag_message=message)
    except ValueError as err:
        if "README.md" not in str(err):  # huggingface_hub relays the Hub's verdict on the card's metadata
            raise
        raise HubError(f"the Hub refused the metadata of {folder / CARD}: {_reason(err)}") from None
    except (HTTPError, OSError, RuntimeError) as err:
        # huggingface_hub reports a failed LFS upload as a RuntimeError caused by the HTTP error
        if isinstance(err, RuntimeError) and not isinstance(err.__cause__, (HTTPError, OSError)):
            raise
        reason = _reason(err) + (f" ({_reason(err.__cause__)})" if isinstance(err, RuntimeError) else "")
        raise HubError(
            f"pushing {str(folder)!r} to {where} failed: {reason}; "
            + (
                retry_hint
                or "run the same command again to resume (files the Hub already holds are not uploaded twice)"
            )
        ) from None
    logger.info("Pushed %s to %s at commit %s%s", folder, where, commit.oid, f" (tag {tag})" if tag else "")
    return {"repo_id": repo_id, "commit": commit.oid, "tag": tag, "url": url, "pushed": True}


# A release this big is uploaded in chunks (see _upload_in_chunks); below it, upload_folder does it all.
LARGE_RELEASE_FILES = 500
LARGE_RELEASE_BYTES = 20 * 1024**3
CHUNK_FILES = 100


def _is_large(folder: Path, only=None) -> bool:
    files = _local_files(folder, only)
    return (
        len(files) > LARGE_RELEASE_FILES
        or sum(p.stat().st_size for p in files.values()) > LARGE_RELEASE_BYTES
    )


def _upload_in_chunks(
    api, folder: Path, repo_id: str, repo_type: str, message: str, authoritative: bool, only=None
):
    """Upload a large folder's LFS objects chunk by chunk, then make ONE commit of the whole folder.

    Why not ``upload_large_folder``: it commits as it goes, so the repository shows partial releases
    (and the huggingface_hub pinned here has none). Why not one ``upload_folder``: it hashes and uploads
    every file before anything is settled, with one progress bar for gigabytes. Here each chunk's objects
    are pre-uploaded (``preupload_lfs_files``: the Hub says which it already holds, so a rerun after a
    failure resumes at the first missing object), and the single commit that follows names the exact
    parent it was computed against: the branch shows either the previous release or this one, complete.

    Args:
        authoritative: Delete files on the Hub that the folder does not have (as ``delete_patterns=["*"]``).
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    local = _local_files(folder, only)
    parent = api.repo_info(repo_id, repo_type=repo_type).sha
    additions = [
        CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(path)) for rel, path in local.items()
    ]
    for start in range(0, len(additions), CHUNK_FILES):
        logger.info(
            "Pre-uploading files %d-%d of %d",
            start + 1,
            min(start + CHUNK_FILES, len(additions)),
            len(additions),
        )
        api.preupload_lfs_files(repo_id, additions[start : start + CHUNK_FILES], repo_type=repo_type)
    deletions = []
    if authoritative:
        remote = api.list_repo_files(repo_id, repo_type=repo_type, revision=parent)
        deletions = [
            CommitOperationDelete(path) for path in remote if path not in local and path != ".gitattributes"
        ]
    return api.create_commit(
        repo_id,
        [*additions, *deletions],
        commit_message=message,
        repo_type=repo_type,
        parent_commit=parent,
    )


def _reason(err: Exception) -> str:
    """One line from a Hub or network error: the server's own message when it sent one."""
    text = getattr(err, "server_message", None) or str(err) or type(err).__name__
    return _redact(" ".join(text.split()))


_redact = redact  # the one redaction function, in errors.py (the lowest layer)


def _local_files(folder: Path, only=None) -> dict[str, Path]:
    """The files ``upload_folder`` sends, by huggingface_hub's own ignore rules (``.git``, ``.cache/huggingface``).

    Args:
        only: Relative paths to keep (``model push``'s allow-list); None: every file.
    """
    from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects

    every = {
        path.relative_to(folder).as_posix(): path for path in sorted(folder.rglob("*")) if path.is_file()
    }
    kept = filter_repo_objects(every, ignore_patterns=DEFAULT_IGNORE_PATTERNS)
    return {rel: every[rel] for rel in kept if only is None or rel in only}


def _same_content(api, folder: Path, repo_id: str, repo_type: str, commit: str, only=None) -> bool:
    """Whether the commit holds exactly the folder's files, compared by the hashes the Hub reports."""
    from huggingface_hub.hf_api import RepoFile

    remote = {
        entry.path: entry
        for entry in api.list_repo_tree(repo_id, repo_type=repo_type, revision=commit, recursive=True)
        if isinstance(entry, RepoFile)
    }
    local = _local_files(folder, only)
    if ".gitattributes" not in local:  # the Hub writes one when it creates a repository
        remote.pop(".gitattributes", None)
    if set(remote) != set(local):
        return False
    for path, entry in remote.items():
        if _local_id(local[path], lfs=entry.lfs is not None) != (
            entry.lfs.sha256 if entry.lfs else entry.blob_id
        ):
            return False
    return True


def _local_id(path: Path, *, lfs: bool) -> str:
    """The id the Hub reports for a file: the sha256 of an LFS object, the git blob sha1 of a regular file."""
    from huggingface_hub.utils.sha import git_hash, sha_fileobj

    if lfs:
        with path.open("rb") as file:
            return sha_fileobj(file).hex()
    return git_hash(path.read_bytes())  # regular files are small: the Hub keeps anything over 10 MB in LFS
