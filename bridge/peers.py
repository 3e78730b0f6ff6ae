"""Who is on the other end of a loopback connection: the client a request counts for in the fair queue.

A client is a program: the process that owns the peer's socket, found through /proc on Linux (the kernel's
table of TCP sockets gives the socket's inode, and the process holding that inode is the client). Eight
connections from one program then take one turn, not eight. Where the process cannot be told (another OS,
a process of another user, one gone already), and for connections from the bridge's own process (its `--ask`,
tests), each connection counts as its own client.
"""

from __future__ import annotations

import os
import socket
from collections import OrderedDict
from collections.abc import Hashable

PROC = "/proc"
_recent: OrderedDict[int, None] = OrderedDict()  # processes seen lately: looked at first, as clients come back
_RECENT = 32


def client_key(connection: Hashable, peer: tuple | None, local: tuple | None) -> Hashable:
    """The fair queue's key for a connection from `peer` to our `local` address: the peer's process where it
    can be told, else the connection itself."""
    pid = peer_process(peer, local) if peer and local else None
    return ("process", pid) if pid is not None and pid != os.getpid() else connection


def peer_process(peer: tuple, local: tuple) -> int | None:
    """The pid of the process holding the TCP socket `peer` -> `local` on this machine, or None."""
    inode = _socket_inode(peer, local)
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in [*reversed(_recent), *(int(name) for name in _listdir(PROC) if name.isdigit())]:
        if _holds(pid, target):
            _recent[pid] = None
            _recent.move_to_end(pid)
            while len(_recent) > _RECENT:
                _recent.popitem(last=False)
            return pid
    return None


def _socket_inode(peer: tuple, local: tuple) -> int | None:
    """The inode of the socket whose local end is `peer` and remote end is `local` (/proc/net/tcp)."""
    want = (_hex_address(peer), _hex_address(local))
    try:
        with open(f"{PROC}/net/tcp", encoding="ascii") as table:
            next(table)  # the header
            for line in table:
                fields = line.split()
                if (fields[1], fields[2]) == want:
                    return int(fields[9]) or None
    except (OSError, ValueError, IndexError, StopIteration):
        pass
    return None


def _hex_address(address: tuple) -> str:
    """127.0.0.1:5000 as /proc/net/tcp writes it: the IPv4 address in host byte order, then the port."""
    packed = socket.inet_aton(address[0])
    return f"{int.from_bytes(packed, 'little'):08X}:{address[1]:04X}"


def _holds(pid: int, target: str) -> bool:
    folder = f"{PROC}/{pid}/fd"
    for fd in _listdir(folder):
        try:
            if os.readlink(f"{folder}/{fd}") == target:
                return True
        except OSError:
            continue
    return False


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []
