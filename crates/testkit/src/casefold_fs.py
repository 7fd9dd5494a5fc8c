"""A case-insensitive, case-preserving file system over a folder, through FUSE.

The kernel here has neither ext4 casefold (no CONFIG_UNICODE) nor vfat, so the reliability
tests mount this instead, as macOS (APFS) and Windows (NTFS) behave by default: a name is
found whatever its case, a new file takes the case it was created with, and a second name
that differs from an existing one only in case opens that one.

    casefold_fs.py BACKING MOUNTPOINT      (runs in the foreground until unmounted)

Needs libfuse2 and fusepy (scripts/test-servers installs both).
"""

import errno
import os
import sys

from fuse import FUSE, FuseOSError, Operations


class Casefold(Operations):
    # Times in nanoseconds, as the kernel keeps them (a sync compares them exactly).
    use_ns = True

    def __init__(self, backing):
        self.backing = os.path.realpath(backing)

    def real(self, path):
        """The backing path of `path`, each name matched without regard to case; a name that
        matches nothing is kept as given (it is about to be created)."""
        here = self.backing
        for name in [p for p in path.split("/") if p]:
            exact = os.path.join(here, name)
            if os.path.lexists(exact):
                here = exact
                continue
            folded = name.casefold()
            try:
                match = next((n for n in os.listdir(here) if n.casefold() == folded), name)
            except (FileNotFoundError, NotADirectoryError):
                match = name
            here = os.path.join(here, match)
        return here

    def __call__(self, op, path, *args):
        try:
            return super().__call__(op, path, *args)
        except OSError as e:
            raise FuseOSError(e.errno or errno.EIO)

    def access(self, path, mode):
        if not os.access(self.real(path), mode):
            raise FuseOSError(errno.EACCES)

    def chmod(self, path, mode):
        os.chmod(self.real(path), mode)

    def chown(self, path, uid, gid):
        os.lchown(self.real(path), uid, gid)

    def getattr(self, path, fh=None):
        st = os.lstat(self.real(path))
        keys = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_ino")
        out = {k: getattr(st, k) for k in keys}
        for k in ("st_atime", "st_mtime", "st_ctime"):
            out[k] = getattr(st, k + "_ns")
        return out

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self.real(path))

    def readlink(self, path):
        return os.readlink(self.real(path))

    def mknod(self, path, mode, dev):
        os.mknod(self.real(path), mode, dev)

    def rmdir(self, path):
        os.rmdir(self.real(path))

    def mkdir(self, path, mode):
        os.mkdir(self.real(path), mode)

    def statfs(self, path):
        st = os.statvfs(self.real(path))
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree",
                "f_files", "f_flag", "f_frsize", "f_namemax")
        return {k: getattr(st, k) for k in keys}

    def unlink(self, path):
        os.unlink(self.real(path))

    def symlink(self, target, source):
        os.symlink(source, self.real(target))

    def rename(self, old, new):
        src, dst = self.real(old), self.real(new)
        if src == dst:
            # Only the case changes: the file takes the new name's case.
            dst = os.path.join(os.path.dirname(src), os.path.basename(new))
        os.rename(src, dst)

    def link(self, target, source):
        os.link(self.real(source), self.real(target))

    def utimens(self, path, times=None):
        os.utime(self.real(path), ns=times, follow_symlinks=False)

    def open(self, path, flags):
        return os.open(self.real(path), flags)

    def create(self, path, mode, fi=None):
        return os.open(self.real(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)

    def read(self, path, length, offset, fh):
        return os.pread(fh, length, offset)

    def write(self, path, buf, offset, fh):
        return os.pwrite(fh, buf, offset)

    def truncate(self, path, length, fh=None):
        if fh is not None:
            os.ftruncate(fh, length)
        else:
            os.truncate(self.real(path), length)

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        os.close(fh)

    def fsync(self, path, fdatasync, fh):
        if fdatasync:
            os.fdatasync(fh)
        else:
            os.fsync(fh)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    # No kernel caching of names or attributes: the kernel's name cache is case-sensitive,
    # and a cached miss for one case would hide the file under another.
    FUSE(Casefold(sys.argv[1]), sys.argv[2], foreground=True, nothreads=True,
         entry_timeout=0, attr_timeout=0, negative_timeout=0)
