"""pyarrow datasets over Beam's FileSystems, so Parquet on s3:// and gs:// is read with the same settings
(endpoint, credentials chain) as every Beam read and write, not with pyarrow's own S3/GCS clients.

Read-only: datasets are written by Beam sinks or `pipelines.core.io.write_table`.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
from apache_beam.io.filesystems import FileSystems

from pipelines.core.uris import ensure_configured, is_remote


class BeamFileSystemHandler(pafs.FileSystemHandler):
    """The read side of `pyarrow.fs.FileSystemHandler` on Beam's FileSystems (files given by full URI)."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BeamFileSystemHandler)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def get_type_name(self) -> str:
        return "beam"

    def normalize_path(self, path: str) -> str:
        return path

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        ensure_configured()
        infos = []
        for path in paths:
            try:
                found = FileSystems.match([path])[0].metadata_list
            except Exception:  # noqa: BLE001 - BeamIOError: nothing there
                found = []
            exact = [m for m in found if m.path == path]
            if exact:
                infos.append(pafs.FileInfo(path, pafs.FileType.File, size=exact[0].size_in_bytes))
            else:
                infos.append(pafs.FileInfo(path, pafs.FileType.NotFound))
        return infos

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        ensure_configured()
        pattern = selector.base_dir.rstrip("/") + "/**"
        return [
            pafs.FileInfo(m.path, pafs.FileType.File, size=m.size_in_bytes)
            for r in FileSystems.match([pattern])
            for m in r.metadata_list
        ]

    def open_input_file(self, path: str) -> pa.NativeFile:
        ensure_configured()
        return pa.PythonFile(FileSystems.open(path, compression_type="uncompressed"), mode="r")

    def open_input_stream(self, path: str) -> pa.NativeFile:
        return self.open_input_file(path)

    def _read_only(self, *args, **kwargs):
        raise NotImplementedError("pipelines.core.arrowfs is read-only")

    create_dir = delete_dir = delete_dir_contents = delete_root_dir_contents = _read_only
    delete_file = move = copy_file = open_output_stream = open_append_stream = _read_only


def filesystem_for(files: list[str]) -> pafs.FileSystem | None:
    """Beam's FileSystems for URIs; None (pyarrow's local file system) when every file is local."""
    if any(is_remote(f) for f in files):
        return pafs.PyFileSystem(BeamFileSystemHandler())
    return None


def dataset(files: list[str]) -> pads.Dataset:
    """A Parquet dataset over local files or object-store URIs (mixed is fine: all go through Beam)."""
    return pads.dataset(files, format="parquet", filesystem=filesystem_for(files))
