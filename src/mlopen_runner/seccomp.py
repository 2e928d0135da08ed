"""The seccomp filter every sandboxed pipeline process runs under, built with libseccomp.

bubblewrap loads it (`--seccomp FD`) just before it starts the pipeline's command, so bwrap's own
setup is not affected. The filter allows everything but system calls no pipeline needs and an
escape would: tracing other processes (ptrace of the sandbox's init left a run hung for its
whole time limit), new namespaces, mounts, the kernel keyring, BPF, perf events, loading kernel
modules or a new kernel, and a few more. They fail with EPERM, as an unprivileged process would
see them fail. clone3 fails with ENOSYS so that the C library falls back to clone, whose flags a
filter can read (clone3 passes them in memory, where a filter cannot look).

The filter is compiled once per process (libseccomp through pyseccomp, a ctypes binding) and
handed to each bwrap through a pipe of its own.
"""

from __future__ import annotations

import errno
import functools
import os
import tempfile

# Denied outright.
DENIED_SYSCALLS = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    "unshare",
    "setns",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "open_by_handle_at",
    "name_to_handle_at",
    "syslog",
    "acct",
    "swapon",
    "swapoff",
    "reboot",
    "iopl",
    "ioperm",
    "quotactl",
    "lookup_dcookie",
    "vhangup",
    "personality",
)
# clone() flags that would make a new namespace: clone with any of them is denied.
NAMESPACE_CLONE_FLAGS = {
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
    "CLONE_NEWTIME": 0x00000080,
}


class SeccompUnavailable(RuntimeError):
    """libseccomp (or its binding) is missing, or the filter cannot be built on this host."""


@functools.cache
def filter_bytes() -> bytes:
    """The compiled BPF program (raises SeccompUnavailable)."""
    try:
        import pyseccomp  # noqa: PLC0415 - parent side only; the pipeline's own environment lacks it
    except (ImportError, OSError) as exc:  # OSError: libseccomp.so.2 itself is missing
        raise SeccompUnavailable(f"libseccomp is not usable here ({exc}); install libseccomp2 and pyseccomp") from exc
    try:
        rules = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
        for name in DENIED_SYSCALLS:
            try:
                rules.add_rule(pyseccomp.ERRNO(errno.EPERM), name)
            except (ValueError, RuntimeError, OSError):  # a name this architecture does not have
                continue
        for flag in NAMESPACE_CLONE_FLAGS.values():
            rules.add_rule(pyseccomp.ERRNO(errno.EPERM), "clone", pyseccomp.Arg(0, pyseccomp.MASKED_EQ, flag, flag))
        rules.add_rule(pyseccomp.ERRNO(errno.ENOSYS), "clone3")
        with tempfile.TemporaryFile() as compiled:
            rules.export_bpf(compiled)
            compiled.seek(0)
            return compiled.read()
    except (ValueError, RuntimeError, OSError) as exc:
        raise SeccompUnavailable(f"the seccomp filter could not be built: {exc}") from exc


def filter_fd() -> int:
    """A new readable descriptor holding the compiled filter, for one bwrap to read; close it after."""
    return fd_holding(filter_bytes())


def fd_holding(data: bytes) -> int:
    """A pipe's read end with `data` in it and its write end closed (the filter is far below a pipe's buffer)."""
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, data)
    finally:
        os.close(write_end)
    return read_end
