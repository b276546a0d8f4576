"""Small file operations that work the same on a local experiment folder and on a URI storage
(``s3://``, ``gs://``, ...), through pyarrow's filesystems, which Ray Tune itself uses."""

from __future__ import annotations

from pathlib import Path

import pyarrow.fs

from search.config import is_uri


def _fs(path: str) -> tuple[pyarrow.fs.FileSystem, str]:
    if is_uri(path):
        return pyarrow.fs.FileSystem.from_uri(path)
    return pyarrow.fs.LocalFileSystem(), str(Path(path).absolute())


def write_text(path: str, text: str) -> None:
    fs, fs_path = _fs(path)
    fs.create_dir(fs_path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(fs_path) as stream:
        stream.write(text.encode())


def read_text(path: str) -> str | None:
    """The file's text, or None when it does not exist."""
    fs, fs_path = _fs(path)
    if fs.get_file_info(fs_path).type != pyarrow.fs.FileType.File:
        return None
    with fs.open_input_stream(fs_path) as stream:
        return stream.readall().decode()


def upload_dir(local_dir: Path, destination: str) -> None:
    """Copy a local folder to ``destination`` (a URI), replacing files of the same names."""
    fs, fs_path = _fs(destination)
    fs.create_dir(fs_path, recursive=True)
    pyarrow.fs.copy_files(str(local_dir.absolute()), fs_path, source_filesystem=pyarrow.fs.LocalFileSystem(),
                          destination_filesystem=fs)
