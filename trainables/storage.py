"""Where a study's files live: a local (or NFS) folder, or object storage (``s3://``, ``gs://``).

Every helper takes a *location*: a local path (``str`` or ``Path``) or a URI that
``pyarrow.fs.FileSystem.from_uri`` understands, with its options as a query string::

    s3://bucket/prefix
    s3://bucket/prefix?endpoint_override=127.0.0.1:9000&scheme=http   # MinIO, moto, Ceph ...
    gs://bucket/prefix
    gs://bucket/prefix?endpoint_override=127.0.0.1:4443&scheme=http&anonymous=true  # an emulator

Local locations keep their plain ``pathlib`` behaviour (nothing here imports pyarrow for them).
Credentials never go in a URI: pyarrow takes them from the environment (``AWS_ACCESS_KEY_ID``
..., ``GOOGLE_APPLICATION_CREDENTIALS``), a profile, or the node's instance role.

Object stores have no rename: a ``write_text`` becomes visible when the whole object is written
(a multipart upload completes at close), and a folder is "complete" when its marker file,
written last, exists (``result.json`` of a trial, ``job.json`` of a job).

Trials work on local copies, in a staging folder under the cache dir (``staging_dir``), and
mirror them to the remote location (``trainables.trial``). This module only needs pyarrow,
never torch, so the driver can use it.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit, urlunsplit

REMOTE_SCHEMES = ("s3", "gs", "gcs")
# what pyarrow 25's FileSystem.from_uri accepts in the query string
URI_OPTIONS = {
    "s3": ("region", "scheme", "endpoint_override", "allow_bucket_creation", "allow_bucket_deletion",
           "tls_ca_file_path", "tls_verify_certificates"),
    # anonymous: ours, not pyarrow's (no credentials at all: a GCS emulator, a public bucket)
    "gs": ("scheme", "endpoint_override", "retry_limit_seconds", "project_id", "anonymous"),
}
URI_OPTIONS["gcs"] = URI_OPTIONS["gs"]
_CREDENTIAL_WORDS = ("key", "secret", "token", "password", "credential")


class StorageError(RuntimeError):
    """A storage location that cannot be used (unreachable, missing bucket, no permission)."""


# --------------------------------------------------------------------------- locations

def scheme_of(location) -> str | None:
    """``s3`` for ``s3://b/p``; None for a local path."""
    text = str(location)
    if "://" not in text:
        return None
    return text.split("://", 1)[0].lower()


def is_remote(location) -> bool:
    return location is not None and scheme_of(location) in REMOTE_SCHEMES


def validate_location(text: str) -> str | None:
    """Why ``text`` cannot be a storage location (a one-line message), or None. No network."""
    scheme = scheme_of(text)
    if scheme is None:
        return None
    if scheme not in REMOTE_SCHEMES:
        return (f"unsupported scheme '{scheme}://': give a local or shared (NFS) path, "
                f"or an s3:// or gs:// URI")
    parts = urlsplit(text)
    if "@" in parts.netloc:
        return "credentials do not go in the URI: give them through the environment or an instance role"
    if not parts.netloc:
        return f"the URI needs a bucket: {scheme}://bucket/prefix"
    allowed = URI_OPTIONS[scheme]
    for key, _ in parse_qsl(parts.query, keep_blank_values=True):
        if key in allowed:
            continue
        if any(word in key.lower() for word in _CREDENTIAL_WORDS):
            return (f"credentials do not go in the URI ('{key}'): give them through the environment "
                    f"or an instance role")
        return f"unknown {scheme}:// option '{key}' (known: {', '.join(allowed)})"
    return None


def join(location, *parts: str):
    """``location/part/...``: a ``Path`` for a local location, a URI (query kept) for a remote one."""
    if not is_remote(location):
        return Path(location, *parts)
    split = urlsplit(str(location))
    path = "/".join([split.path.rstrip("/"), *(str(p).strip("/") for p in parts if str(p))])
    return urlunsplit((split.scheme, split.netloc, path, split.query, ""))


def basename(location) -> str:
    if not is_remote(location):
        return Path(location).name
    return urlsplit(str(location)).path.rstrip("/").rsplit("/", 1)[-1]


def display(location) -> str:
    """A location as shown to people (a URI without its connection options)."""
    if not is_remote(location):
        return str(location)
    split = urlsplit(str(location))
    return urlunsplit((split.scheme, split.netloc, split.path, "", ""))


_FILESYSTEMS: dict[tuple[str, str, str], object] = {}


def filesystem(uri: str):
    """``(pyarrow filesystem, path on it)`` of a remote URI; filesystems are reused per bucket+options."""

    split = urlsplit(str(uri))
    key = (split.scheme.lower(), split.netloc, split.query)
    fs = _FILESYSTEMS.get(key)
    if fs is None:
        try:
            fs = _open_filesystem(split)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises ArrowInvalid / OSError
            raise StorageError(f"cannot use {display(uri)}: {_first_line(exc)}") from exc
        _FILESYSTEMS[key] = fs
    path = (split.netloc + split.path).rstrip("/")
    return fs, path


def _open_filesystem(split):
    """pyarrow's filesystem for a URI (bucket and options); ``gs://...?anonymous=true`` is built
    here, as ``from_uri`` has no such option."""
    import datetime

    import pyarrow.fs

    options = dict(parse_qsl(split.query))
    if split.scheme.lower() in ("gs", "gcs") and options.pop("anonymous", "false").lower() in ("true", "1", "yes"):
        retry = options.pop("retry_limit_seconds", None)
        return pyarrow.fs.GcsFileSystem(
            anonymous=True, **options,
            **({"retry_time_limit": datetime.timedelta(seconds=float(retry))} if retry else {}))
    fs, _ = pyarrow.fs.FileSystem.from_uri(urlunsplit((split.scheme, split.netloc, "", split.query, "")))
    return fs


def for_ray(location) -> tuple[str, object | None]:
    """``(storage_path, storage_filesystem)`` for a Ray ``RunConfig``: Ray Tune and Train write
    through the very filesystem this module uses (same endpoint, credentials and options)."""
    if not is_remote(location):
        return str(location), None
    fs, path = filesystem(location)
    return path, fs


def staging_dir(location, cache_dir: str | os.PathLike) -> Path:
    """The local folder where a remote location is worked on: ``<cache_dir>/staging/<scheme>/<bucket>/<key>``.

    Two endpoints (query options) with the same bucket name get different folders.
    """
    split = urlsplit(str(location))
    bucket = split.netloc
    if split.query:
        bucket += "-" + hashlib.sha256(split.query.encode()).hexdigest()[:8]
    return Path(cache_dir).expanduser() / "staging" / split.scheme.lower() / bucket / split.path.strip("/")


# --------------------------------------------------------------------------- queries

def _info(location):
    fs, path = filesystem(location)
    return fs.get_file_info(path)


def exists(location) -> bool:
    if not is_remote(location):
        return Path(location).exists()
    import pyarrow.fs

    return _info(location).type != pyarrow.fs.FileType.NotFound


def is_file(location) -> bool:
    if not is_remote(location):
        return Path(location).is_file()
    import pyarrow.fs

    return _info(location).type == pyarrow.fs.FileType.File


def is_dir(location) -> bool:
    """A folder that exists; on object storage: a prefix with something under it."""
    if not is_remote(location):
        return Path(location).is_dir()
    import pyarrow.fs

    return _info(location).type == pyarrow.fs.FileType.Directory


def _walk(location) -> list[tuple[str, object]]:
    """``(relative path, FileInfo)`` of everything under a remote folder, by path ([] if none).

    Always a recursive listing: on GCS, pyarrow's listings hold no entry for a folder that
    exists only as the prefix of the objects in it (most folders), so the helpers below find
    folders from the files' paths instead."""
    import pyarrow.fs

    fs, path = filesystem(location)
    infos = fs.get_file_info(pyarrow.fs.FileSelector(path, allow_not_found=True, recursive=True))
    return sorted(((i.path[len(path):].strip("/"), i) for i in infos), key=lambda item: item[0])


def _walk_files(location) -> list[tuple[str, object]]:
    import pyarrow.fs

    return [(relative, i) for relative, i in _walk(location) if i.type == pyarrow.fs.FileType.File]


def list_dirs(location) -> list[str]:
    """Names of the folders directly under ``location`` (none if it does not exist)."""
    if not is_remote(location):
        path = Path(location)
        return sorted(p.name for p in path.iterdir() if p.is_dir()) if path.is_dir() else []
    import pyarrow.fs

    names = {relative.split("/", 1)[0] for relative, info in _walk(location)
             if "/" in relative or info.type == pyarrow.fs.FileType.Directory}
    return sorted(names - {""})


def find_files(location, name: str) -> list:
    """Every file called ``name`` anywhere under ``location`` (as locations)."""
    if not is_remote(location):
        path = Path(location)
        return sorted(path.glob(f"**/{name}")) if path.is_dir() else []
    return sorted(join(location, relative) for relative, info in _walk_files(location) if info.base_name == name)


def manifest(location) -> dict[str, list]:
    """``{relative path: [size, mtime_ns]}`` of every file under a folder ({} if none)."""
    if not is_remote(location):
        root = Path(location)
        return {str(p.relative_to(root)): [p.stat().st_size, p.stat().st_mtime_ns]
                for p in sorted(root.rglob("*")) if p.is_file()} if root.is_dir() else {}
    return {relative: [info.size, info.mtime_ns] for relative, info in _walk_files(location)}


# --------------------------------------------------------------------------- files

def read_text(location) -> str | None:
    """The file's text, or None when it does not exist."""
    if not is_remote(location):
        path = Path(location)
        return path.read_text() if path.is_file() else None
    fs, path = filesystem(location)
    try:
        with fs.open_input_stream(path) as stream:
            return stream.read().decode("utf-8")
    except FileNotFoundError:
        return None


def read_json(location) -> dict | None:
    text = read_text(location)
    return None if text is None else json.loads(text)


def write_text(location, text: str) -> None:
    """Write a whole file so that readers see the old content or the new, never a part.

    Locally: a temporary file, then ``os.replace``. On object storage: one object, which appears
    when its upload completes.
    """
    if not is_remote(location):
        path = Path(location)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        return
    fs, path = filesystem(location)
    with fs.open_output_stream(path) as stream:
        stream.write(text.encode("utf-8"))


def write_json(location, payload: dict) -> None:
    write_text(location, json.dumps(payload, indent=2, sort_keys=True))


def delete_file(location) -> None:
    """Remove one file; nothing happens when it is not there."""
    if not is_remote(location):
        Path(location).unlink(missing_ok=True)
        return
    fs, path = filesystem(location)
    try:
        fs.delete_file(path)
    except FileNotFoundError:
        pass


def delete_dir(location) -> None:
    """Remove a folder and everything under it; nothing happens when it is not there."""
    if not is_remote(location):
        shutil.rmtree(location, ignore_errors=True)
        return
    import pyarrow.fs

    fs, path = filesystem(location)
    try:
        fs.delete_dir(path)
    except OSError:  # S3 raises FileNotFoundError for a missing folder, GCS a plain OSError
        if fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound:
            raise


def makedirs(location) -> None:
    """Create a folder (and its parents); on object storage, check the bucket and write access."""
    if not is_remote(location):
        Path(location).mkdir(parents=True, exist_ok=True)
        return
    fs, path = filesystem(location)
    fs.create_dir(path, recursive=True)


def check_access(location) -> None:
    """Fail early, with one line, when a remote location cannot be written (no such bucket,
    no credentials or permission, endpoint unreachable): creates the prefix, writes and removes
    a probe object."""
    if not is_remote(location):
        Path(location).expanduser().mkdir(parents=True, exist_ok=True)
        return
    probe = join(location, ".xstilts-probe")
    try:
        makedirs(location)
        write_text(probe, "ok\n")
        delete_file(probe)
    except StorageError:
        raise
    except Exception as exc:  # noqa: BLE001 - OSError / ArrowInvalid with the store's message
        raise StorageError(f"cannot write to {display(location)}: {_first_line(exc)}") from exc


# --------------------------------------------------------------------------- folders

def upload_file(local: str | os.PathLike, remote: str) -> None:
    import pyarrow.fs

    fs, path = filesystem(remote)
    pyarrow.fs.copy_files(str(Path(local).resolve()), path,
                          source_filesystem=pyarrow.fs.LocalFileSystem(), destination_filesystem=fs)


def upload_dir(local: str | os.PathLike, remote: str, exclude: tuple[str, ...] = ()) -> int:
    """Copy every file under ``local`` to the same relative path under ``remote`` (existing
    objects are overwritten, others left alone); ``exclude``: relative paths to leave out.
    Returns the number of files copied."""
    root = Path(local)
    if not root.is_dir():
        return 0
    files = [p for p in sorted(root.rglob("*")) if p.is_file()
             and p.relative_to(root).as_posix() not in exclude]
    for p in files:
        upload_file(p, join(remote, p.relative_to(root).as_posix()))
    return len(files)


def download_dir(remote: str, local: str | os.PathLike) -> bool:
    """Copy a remote folder to ``local`` (created); False when there is nothing at ``remote``."""
    import pyarrow.fs

    if not is_dir(remote):
        return False
    fs, _ = filesystem(remote)
    root = Path(local).resolve()
    root.mkdir(parents=True, exist_ok=True)
    # file by file, making each parent here (see _walk): pyarrow.fs.copy_files would need the
    # folder entries a GCS listing lacks to create them locally
    for relative, info in _walk_files(remote):
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        pyarrow.fs.copy_files(info.path, str(target), source_filesystem=fs,
                              destination_filesystem=pyarrow.fs.LocalFileSystem())
    return True


def stage_model(uri: str, cache_dir: str | os.PathLike) -> Path:
    """A local copy of a remote model folder (a start checkpoint), downloaded once per node.

    The copy is reused while the remote folder's listing (names, sizes, modification times)
    is unchanged, so a checkpoint trained again is fetched again. Processes on one node that
    stage the same model at once (the ranks of a multi-worker trial) take turns on a lock.
    """
    from filelock import FileLock

    local = staging_dir(uri, cache_dir)
    local.parent.mkdir(parents=True, exist_ok=True)
    stamp = local.with_name(local.name + ".manifest.json")
    with FileLock(str(local) + ".lock"):
        listing = manifest(uri)
        if not listing:
            raise FileNotFoundError(f"no model at {display(uri)}")
        if local.is_dir() and stamp.is_file() and json.loads(stamp.read_text()) == listing:
            return local
        partial = local.with_name(local.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        download_dir(uri, partial)
        shutil.rmtree(local, ignore_errors=True)
        os.replace(partial, local)
        stamp.write_text(json.dumps(listing, sort_keys=True))
    return local


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
