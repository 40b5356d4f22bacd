"""Reading archives we did not write (Debian packages, tar, zip) without trusting them.

Used by the furniture importer (``.deb`` -> ``.sh3f`` zip archives -> OBJ models) and
the image builder (``.deb`` -> IDX files). Every check raises :class:`ArchiveError`, one
line naming the archive and the member at fault:

- **names**: a member whose name is absolute (``/etc/x``, ``C:\\x``) or climbs out with
  ``..`` is refused: nothing is ever written or read outside the destination;
- **links**: only regular files are read. A symbolic or hard link among the members that
  would be read (in a tar, or any symbolic link in a zip) is refused; other links of a
  package (documentation) are never followed or written;
- **sizes**: a tar member is copied with a byte budget counted on the decompressed bytes
  actually read (not on the header's word), and a zip's declared sizes are summed before
  anything is decompressed (:data:`MAX_UNPACKED` in all, :data:`MAX_MEMBER` per member,
  :data:`MAX_MEMBERS` members), so a bomb of a few MB that expands to GBs stops at once,
  in bounded memory and time. ``zipfile`` never returns more than a member's declared
  size (and checks its CRC).

The ``ar`` container of a ``.deb`` is read with offsets and sizes checked against the file.
"""
import io
import os
import stat
import tarfile
import zipfile

from ..errors import UserError

MAX_MEMBERS = 200_000
MAX_UNPACKED = 4 << 30  # bytes decompressed from one archive
MAX_MEMBER = 1 << 30  # bytes of one member
_CHUNK = 1 << 20
STDLIB_TARS = ("data.tar", "data.tar.xz", "data.tar.gz", "data.tar.bz2")  # read without dpkg-deb


class ArchiveError(UserError):
    """An archive that is damaged, hostile or too large; the message names it and the member."""


def unsafe_name(name):
    """Why a member name is refused (absolute, a drive, ``..``), or None if it is safe."""
    text = name.replace("\\", "/")
    if text.startswith("/") or (len(text) > 1 and text[1] == ":"):
        return "an absolute path"
    if ".." in text.split("/"):
        return "a path that climbs out with '..'"
    if "\0" in text:
        return "a name with a NUL byte"
    return None


def ar_members(path):
    """``[(name, data offset, size)]`` of the Unix ``ar`` archive ``path`` (a ``.deb``)."""
    total = os.path.getsize(path)
    out = []
    with open(path, "rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise ArchiveError("{}: not a Debian package (no ar archive header)".format(path))
        while True:
            head = f.read(60)
            if not head:
                break
            if len(head) < 60 or head[58:60] != b"`\n":
                raise ArchiveError("{}: not a readable Debian package (truncated or bad ar member "
                                   "header at byte {})".format(path, f.tell() - len(head)))
            name = head[:16].decode("ascii", "replace").strip().rstrip("/")
            try:
                size = int(head[48:58].decode("ascii").strip())
            except ValueError:
                raise ArchiveError("{}: not a readable Debian package (bad size of ar member {!r})"
                                   .format(path, name)) from None
            offset = f.tell()
            if size < 0 or offset + size > total:
                raise ArchiveError("{}: truncated Debian package (ar member {!r} claims {} bytes, the "
                                   "file ends {} bytes later)".format(path, name, size, total - offset))
            out.append((name, offset, size))
            if len(out) > MAX_MEMBERS:
                raise ArchiveError("{}: more than {} ar members".format(path, MAX_MEMBERS))
            f.seek(size + (size % 2), os.SEEK_CUR)
    return out


def deb_data(deb):
    """``(member name, compressed bytes)`` of the ``data.tar*`` member of a ``.deb``."""
    for name, offset, size in ar_members(deb):
        if name.startswith("data.tar"):
            with open(deb, "rb") as f:
                f.seek(offset)
                return name, f.read(size)
    raise ArchiveError("{}: not a Debian package (no data.tar member)".format(deb))


def open_tar(blob, where):
    """A ``tarfile`` over the bytes ``blob`` (any compression the standard library reads)."""
    try:
        return tarfile.open(fileobj=io.BytesIO(blob), mode="r:*")
    except (tarfile.TarError, EOFError, OSError, ValueError) as err:
        raise ArchiveError("{}: cannot read the archive ({})".format(where, _text(err))) from None


def tar_members(tar, where, wanted):
    """The regular-file members of ``tar`` for which ``wanted(member name)`` is true, after
    checking every member's name and the links among the wanted ones (module docstring)."""
    found, count, declared = [], 0, 0
    try:
        for m in tar:
            count += 1
            if count > MAX_MEMBERS:
                raise ArchiveError("{}: more than {} members".format(where, MAX_MEMBERS))
            why = unsafe_name(m.name)
            if why:
                raise ArchiveError("{}: member {!r} is {}; refusing the archive".format(where, m.name, why))
            if not wanted(m.name):
                continue
            if m.issym() or m.islnk():
                raise ArchiveError("{}: member {!r} is a {} link (to {!r}), not a file; refusing it".format(
                    where, m.name, "symbolic" if m.issym() else "hard", m.linkname))
            if not m.isfile():
                continue
            declared += m.size
            if m.size > MAX_MEMBER or declared > MAX_UNPACKED:
                raise ArchiveError("{}: member {!r} would unpack to {} bytes (more than {} allowed); "
                                   "refusing the archive".format(where, m.name, m.size, _limit(m.size)))
            found.append(m)
    except (tarfile.TarError, EOFError, OSError, ValueError) as err:
        raise ArchiveError("{}: corrupt archive ({})".format(where, _text(err))) from None
    return found


def copy_member(tar, member, dest, where, budget=None):
    """Copy a regular tar member to the file ``dest``, counting the bytes actually read:
    more than the member's size or ``budget`` (a one-element list of bytes left, shared by
    the members of one archive) is an ArchiveError (the partial file is removed)."""
    budget = budget if budget is not None else [MAX_UNPACKED]
    limit = min(member.size, MAX_MEMBER)
    done = 0
    try:
        src = tar.extractfile(member)
        with src, open(dest, "wb") as out:
            while True:
                block = src.read(_CHUNK)
                if not block:
                    break
                done += len(block)
                budget[0] -= len(block)
                if done > limit or budget[0] < 0:
                    raise ArchiveError("{}: member {!r} unpacks to more than {} bytes; refusing the "
                                       "archive".format(where, member.name, _limit(done)))
                out.write(block)
    except ArchiveError:
        _remove(dest)
        raise
    except (tarfile.TarError, EOFError, OSError, ValueError) as err:
        _remove(dest)
        if isinstance(err, OSError) and getattr(err, "filename", None) == dest:
            raise
        raise ArchiveError("{}: corrupt archive at member {!r} ({})".format(where, member.name, _text(err))) from None
    if done != member.size:
        _remove(dest)
        raise ArchiveError("{}: member {!r} is truncated ({} of {} bytes)".format(
            where, member.name, done, member.size))


def check_links_under(root, wanted):
    """After an external tool unpacked an archive into ``root``: a link among the files
    ``wanted(name)`` selects is an ArchiveError (the tool may create links; we never read
    through one)."""
    for d, dirs, files in os.walk(root):
        for fn in dirs + files:
            path = os.path.join(d, fn)
            if wanted(fn) and os.path.islink(path):
                raise ArchiveError("{}: {} is a symbolic link (to {!r}), not a file; refusing it".format(
                    root, os.path.relpath(path, root), os.readlink(path)))


def open_zip(path):
    """``zipfile.ZipFile`` of ``path`` after checking every member (names, symbolic links,
    declared sizes, count); ArchiveError naming the archive and member otherwise."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as err:
        raise ArchiveError("{}: corrupt archive ({})".format(path, _text(err))) from None
    try:
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise ArchiveError("{}: more than {} members".format(path, MAX_MEMBERS))
        declared = 0
        for info in infos:
            why = unsafe_name(info.filename)
            if why:
                raise ArchiveError("{}: member {!r} is {}; refusing the archive".format(path, info.filename, why))
            if stat.S_ISLNK(info.external_attr >> 16):
                raise ArchiveError("{}: member {!r} is a symbolic link, not a file; refusing the "
                                   "archive".format(path, info.filename))
            declared += info.file_size
            if info.file_size > MAX_MEMBER or declared > MAX_UNPACKED:
                raise ArchiveError("{}: member {!r} would unpack to {} bytes ({} in all so far, more than "
                                   "{} allowed); refusing the archive (a zip bomb?)".format(
                                       path, info.filename, info.file_size, declared, _limit(declared)))
    except BaseException:
        zf.close()
        raise
    return zf


def _limit(n):
    return MAX_MEMBER if n <= MAX_MEMBER else MAX_UNPACKED


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def _text(err):
    return " ".join(str(err).split()) or type(err).__name__
