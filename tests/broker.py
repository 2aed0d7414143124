"""A real Mosquitto broker for tests: started on a free port, restartable, removed afterwards."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def mosquitto_binary() -> str:
    """Where Debian installs the broker (scripts/system-deps.sh installs it)."""
    found = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(found).exists():
        raise RuntimeError("mosquitto is not installed: run scripts/system-deps.sh")
    return found


class Broker:
    """One Mosquitto process with persistence, so QoS 1 messages survive a restart."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.config = folder / "mosquitto.conf"
        self.config.write_text(
            "\n".join(
                [
                    f"listener {self.port} 127.0.0.1",
                    "allow_anonymous true",
                    # Started as root, mosquitto would drop to the `mosquitto` user, which cannot
                    # write into pytest's private folders: persistence would fail silently.
                    f"user {getpass.getuser()}",
                    "persistence true",
                    f"persistence_location {folder}/",
                    "autosave_interval 1",
                    "max_queued_messages 0",
                    "log_dest stderr",
                    "log_type error",
                    "",
                ]
            )
        )
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The broker's URL as CITYOPS_MQTT_URL takes it."""
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the broker and wait until it accepts connections."""
        self._process = subprocess.Popen(
            [mosquitto_binary(), "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self._process.stderr.read()!r}")  # type: ignore[union-attr]
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start within 10 s")

    def stop(self) -> None:
        """Stop the broker (SIGTERM: it saves its persistent state first)."""
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            if self._process.stderr is not None:
                self._process.stderr.close()
            self._process = None

    def restart(self, pause: float = 0.5) -> None:
        """Stop, wait a little, start again on the same port."""
        self.stop()
        time.sleep(pause)
        self.start()
