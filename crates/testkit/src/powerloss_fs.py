"""A file system that loses power: writes are kept in memory until synced, through FUSE.

The folder BACKING plays the disk. A file's data written through the mount reaches BACKING
only when the file is synced (fsync or fdatasync); until then it lives in this process. Names
(create, rename, link, unlink, mkdir) reach BACKING at once, as a journaled file system's
metadata does, so the classic fault shows: a file renamed into place before its data was
synced comes back empty or torn.

Every fsync, fsyncdir, rename and link is a numbered "point". With --crash-at N the power goes
at point N, before that operation takes effect: what was written but not synced is torn
(each unsynced file keeps a random prefix of its unsynced writes, the last one possibly cut
at a 512-byte sector, chosen with --seed; --tear none loses them all, --tear all keeps them
all), and the process exits at once, so the mount answers nothing more. Each point is
appended to the --log file as "N OP PATH" (and "crash N" when the power goes), so a run
without --crash-at counts the points of a workload.

    powerloss_fs.py BACKING MOUNTPOINT --log FILE [--crash-at N] [--seed S] [--tear MODE]

Needs libfuse2 and fusepy (scripts/test-servers installs both).
"""

import argparse
import errno
import os
import random
import time

from fuse import FUSE, FuseOSError, Operations


class Unsynced:
    """One file's data since its last sync: the content as readers see it, the writes that
    made it (to tear at power loss) and its modification time."""

    def __init__(self, content, mtime_ns):
        self.content = bytearray(content)
        self.ops = []
        self.mtime_ns = mtime_ns
        self.path = None


class PowerLoss(Operations):
    use_ns = True

    def __init__(self, backing, log, crash_at, seed, tear):
        self.backing = os.path.realpath(backing)
        self.log = log
        self.crash_at = crash_at
        self.random = random.Random(seed)
        self.tear = tear
        self.points = 0
        self.unsynced = {}  # by inode number of the backing file

    def real(self, path):
        return os.path.join(self.backing, path.lstrip("/"))

    def __call__(self, op, path, *args):
        try:
            return super().__call__(op, path, *args)
        except OSError as e:
            raise FuseOSError(e.errno or errno.EIO)

    # ------------------------------------------------------------ points and power ---

    def point(self, op, path):
        self.points += 1
        if self.points == self.crash_at:
            self.power_off()
        with open(self.log, "a") as f:
            f.write(f"{self.points} {op} {path}\n")

    def power_off(self):
        for ino, u in self.unsynced.items():
            if u.path is None or not os.path.exists(u.path):
                continue
            keep = {"none": 0, "all": len(u.ops)}.get(self.tear)
            if keep is None:
                keep = self.random.randint(0, len(u.ops))
            self.apply(u.path, u.ops[:keep], cut_last=self.tear == "torn")
        with open(self.log, "a") as f:
            f.write(f"crash {self.points}\n")
        os._exit(0)

    def apply(self, path, ops, cut_last):
        fd = os.open(path, os.O_WRONLY)
        try:
            for i, (kind, offset, data) in enumerate(ops):
                if kind == "t":
                    os.ftruncate(fd, offset)
                    continue
                if cut_last and i == len(ops) - 1 and len(data) > 512:
                    data = data[: 512 * self.random.randint(0, len(data) // 512)]
                os.pwrite(fd, data, offset)
        finally:
            os.close(fd)

    # ------------------------------------------------------------ unsynced data ---

    def held(self, real_path, fh=None):
        st = os.fstat(fh) if fh is not None else os.lstat(real_path)
        return self.unsynced.get(st.st_ino), st

    def hold(self, real_path, fh=None):
        u, st = self.held(real_path, fh)
        if u is None:
            with open(real_path, "rb") as f:
                u = Unsynced(f.read(), st.st_mtime_ns)
            self.unsynced[st.st_ino] = u
        u.path = real_path
        return u

    def sync(self, real_path, fh):
        u, st = self.held(real_path, fh)
        if u is None:
            return
        fd = os.open(real_path, os.O_WRONLY)
        try:
            os.pwrite(fd, bytes(u.content), 0)
            os.ftruncate(fd, len(u.content))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.utime(real_path, ns=(st.st_atime_ns, u.mtime_ns))
        del self.unsynced[st.st_ino]

    # ------------------------------------------------------------ operations ---

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
        u = self.unsynced.get(st.st_ino)
        if u is not None:
            out["st_size"] = len(u.content)
            out["st_mtime"] = u.mtime_ns
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
        real = self.real(path)
        st = os.lstat(real)
        os.unlink(real)
        if st.st_nlink <= 1:
            self.unsynced.pop(st.st_ino, None)

    def symlink(self, target, source):
        os.symlink(source, self.real(target))

    def rename(self, old, new):
        self.point("rename", f"{old} -> {new}")
        src, dst = self.real(old), self.real(new)
        replaced = os.lstat(dst) if os.path.lexists(dst) else None
        os.rename(src, dst)
        if replaced is not None and replaced.st_nlink <= 1:
            self.unsynced.pop(replaced.st_ino, None)
        prefix = src + "/"
        for u in self.unsynced.values():
            if u.path == src:
                u.path = dst
            elif u.path is not None and u.path.startswith(prefix):
                u.path = dst + u.path[len(src):]

    def link(self, target, source):
        self.point("link", f"{source} -> {target}")
        os.link(self.real(source), self.real(target))

    def utimens(self, path, times=None):
        real = self.real(path)
        os.utime(real, ns=times, follow_symlinks=False)
        u, st = self.held(real)
        if u is not None:
            u.mtime_ns = times[1] if times else time.time_ns()

    def open(self, path, flags):
        return os.open(self.real(path), flags)

    def create(self, path, mode, fi=None):
        return os.open(self.real(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)

    def read(self, path, length, offset, fh):
        u, _ = self.held(self.real(path), fh)
        if u is not None:
            return bytes(u.content[offset:offset + length])
        return os.pread(fh, length, offset)

    def write(self, path, buf, offset, fh):
        u = self.hold(self.real(path), fh)
        end = offset + len(buf)
        if len(u.content) < offset:
            u.content.extend(bytes(offset - len(u.content)))
        u.content[offset:end] = buf
        u.ops.append(("w", offset, bytes(buf)))
        u.mtime_ns = time.time_ns()
        return len(buf)

    def truncate(self, path, length, fh=None):
        u = self.hold(self.real(path), fh)
        del u.content[length:]
        if len(u.content) < length:
            u.content.extend(bytes(length - len(u.content)))
        u.ops.append(("t", length, b""))
        u.mtime_ns = time.time_ns()

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        os.close(fh)

    def fsync(self, path, fdatasync, fh):
        self.point("fdatasync" if fdatasync else "fsync", path)
        self.sync(self.real(path), fh)

    def opendir(self, path):
        return 0

    def fsyncdir(self, path, datasync, fh):
        self.point("fsyncdir", path)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(usage=__doc__)
    parser.add_argument("backing")
    parser.add_argument("mountpoint")
    parser.add_argument("--log", required=True)
    parser.add_argument("--crash-at", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tear", choices=["torn", "prefix", "none", "all"], default="torn")
    a = parser.parse_args()
    FUSE(PowerLoss(a.backing, a.log, a.crash_at, a.seed, a.tear), a.mountpoint,
         foreground=True, nothreads=True, entry_timeout=0, attr_timeout=0,
         negative_timeout=0)
