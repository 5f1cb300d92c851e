"""A real HLS packager on loopback: ffmpeg writing a live 1080p/720p/480p ladder, served by a small HTTP origin.

For tests and measurements of playback health against the real thing (Debian's ``ffmpeg`` package):

>>> async with HlsLadder() as ladder:
...     report = await client.playback.probe(ladder.url)   # playing
...     ladder.freeze("720p")                              # 720p's playlist stops changing
...     await ladder.kill()                                # the packager crashes (no EXT-X-ENDLIST)
...     await ladder.start()                               # a fresh one, media sequence 0 again
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from email.utils import formatdate
from pathlib import Path
from types import TracebackType

import anyio
from aiohttp import web
from anyio.abc import Process

__all__ = ["HlsLadder", "find_ffmpeg"]

RENDITIONS = ("1080p", "720p", "480p")
#: Small pictures at a low frame rate: three encodes cost a few percent of a core.
_SIZES = ("192:108", "160:90", "128:72")
_BITRATES = ("300k", "200k", "100k")


def find_ffmpeg() -> str:
    """The path of ``ffmpeg`` on ``PATH``; ``FileNotFoundError`` saying how to install it otherwise."""
    found = shutil.which("ffmpeg")
    if found is None:
        raise FileNotFoundError("ffmpeg not found: install it (Debian: apt-get install -y ffmpeg)")
    return found


class HlsLadder:
    """ffmpeg (``-re``, a lavfi test source) writing a live three-rendition HLS ladder of ``segment`` second
    segments into a temporary folder, and an HTTP origin on 127.0.0.1 serving it: ``url`` is the master playlist.

    The origin sends ``Last-Modified`` (the file's time) and records each request's headers in ``requests``.
    ``freeze(rendition)`` serves that rendition's playlist as it is now, as a stuck packager would, until
    ``thaw``. ``kill()`` ends ffmpeg with SIGKILL (a crash: no ``EXT-X-ENDLIST``), ``stop()`` with SIGTERM (it
    writes ``EXT-X-ENDLIST``); ``start()`` runs a fresh one, whose media sequences start from 0 again.
    """

    def __init__(self, *, segment: int = 1, list_size: int = 6) -> None:
        self.segment = segment
        self.list_size = list_size
        self.folder = Path(tempfile.mkdtemp(prefix="sigma-hls-"))
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._frozen: dict[str, tuple[bytes, float]] = {}
        self._process: Process | None = None
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """The master playlist's URL."""
        if self._url is None:
            raise RuntimeError("the ladder is not served yet: use `async with HlsLadder() as ladder`")
        return f"{self._url}/master.m3u8"

    def playlist_path(self, rendition: str) -> str:
        """The URL path of a rendition's media playlist (``/720p/index.m3u8``)."""
        return f"/{rendition}/index.m3u8"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    # -- the packager ---------------------------------------------------------------------------------------

    async def start(self, *, timeout: float = 30.0) -> HlsLadder:
        """Run ffmpeg (unless it runs) and wait until the master and every rendition's playlist are written."""
        if self.running:
            return self
        for rendition in RENDITIONS:
            (self.folder / rendition / "index.m3u8").unlink(missing_ok=True)
        (self.folder / "master.m3u8").unlink(missing_ok=True)
        log = (self.folder / "ffmpeg.log").open("ab")
        try:
            self._process = await anyio.open_process(
                self._command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, cwd=self.folder
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        wanted = [self.folder / "master.m3u8", *(self.folder / r / "index.m3u8" for r in RENDITIONS)]
        # Polled: the only sign of readiness is files on disk, and nothing can be awaited for them.
        while not all(p.is_file() for p in wanted):
            process = self._process
            if process is None or process.returncode is not None:
                raise RuntimeError(f"ffmpeg exited early: {self._log_tail()}")
            if time.monotonic() > deadline:
                await self.kill()
                raise TimeoutError(f"ffmpeg wrote no playlists within {timeout:g} s: {self._log_tail()}")
            await anyio.sleep(0.05)
        return self

    async def kill(self) -> None:
        """SIGKILL ffmpeg: its playlists stay as they are, without ``EXT-X-ENDLIST``."""
        await self._end(signal.SIGKILL)

    async def stop(self) -> None:
        """SIGTERM ffmpeg: it ends each playlist with ``EXT-X-ENDLIST``."""
        await self._end(signal.SIGTERM)

    async def _end(self, how: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.send_signal(how)
        with anyio.move_on_after(5):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()

    def _command(self) -> list[str]:
        split = ";".join(f"[v{i}]scale={size}[s{i}]" for i, size in enumerate(_SIZES))
        command = [
            find_ffmpeg(), "-hide_banner", "-loglevel", "error", "-nostdin", "-re",
            "-f", "lavfi", "-i", "testsrc2=size=192x108:rate=10",
            "-filter_complex", f"[0:v]split=3[v0][v1][v2];{split}",
        ]  # fmt: skip
        for i in range(len(RENDITIONS)):
            command += ["-map", f"[s{i}]"]
        command += [
            "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
            "-g", str(10 * self.segment), "-keyint_min", str(10 * self.segment), "-sc_threshold", "0",
        ]  # fmt: skip
        for i, rate in enumerate(_BITRATES):
            command += [f"-b:v:{i}", rate]  # so that the master lists every rendition with its BANDWIDTH
        command += [
            "-f", "hls", "-hls_time", str(self.segment), "-hls_list_size", str(self.list_size),
            # temp_file: each playlist is written aside and renamed, so a reader never sees half of one.
            "-hls_flags", "delete_segments+temp_file+independent_segments",
            "-var_stream_map", " ".join(f"v:{i},name:{name}" for i, name in enumerate(RENDITIONS)),
            "-master_pl_name", "master.m3u8",
            "-hls_segment_filename", "%v/seg_%d.ts",
            "%v/index.m3u8",
        ]  # fmt: skip
        return command

    def _log_tail(self) -> str:
        try:
            text = (self.folder / "ffmpeg.log").read_text(errors="replace").strip()
        except OSError:
            return "no log"
        return text[-500:] or "no output"

    # -- the origin -----------------------------------------------------------------------------------------

    def freeze(self, rendition: str) -> None:
        """Serve ``rendition``'s playlist as it is now (and its ``Last-Modified``), whatever ffmpeg writes next."""
        path = self.folder / rendition / "index.m3u8"
        self._frozen[self.playlist_path(rendition)] = (path.read_bytes(), path.stat().st_mtime)

    def thaw(self, rendition: str) -> None:
        """Serve ``rendition``'s playlist as ffmpeg writes it again."""
        self._frozen.pop(self.playlist_path(rendition), None)

    async def serve(self) -> str:
        """Serve the folder on a free loopback port; returns the master's URL."""
        app = web.Application()
        app.router.add_get("/{path:.*}", self._handle)
        runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.25, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self._url = f"http://{host}:{port}"
        return self.url

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, dict(request.headers)))
        frozen = self._frozen.get(request.path)
        if frozen is not None:
            body, mtime = frozen
        else:
            target = (self.folder / request.path.lstrip("/")).resolve()
            if not target.is_relative_to(self.folder) or not target.is_file():
                raise web.HTTPNotFound()
            try:
                body, mtime = target.read_bytes(), target.stat().st_mtime
            except FileNotFoundError:  # deleted by ffmpeg between the check and the read
                raise web.HTTPNotFound() from None
        kind = "application/vnd.apple.mpegurl" if request.path.endswith(".m3u8") else "video/mp2t"
        headers = {"Last-Modified": formatdate(mtime, usegmt=True), "Cache-Control": "no-cache"}
        return web.Response(body=body, content_type=kind, headers=headers)

    async def aclose(self) -> None:
        """Kill ffmpeg, stop serving, remove the folder."""
        await self.kill()
        runner, self._runner = self._runner, None
        if runner is not None:
            for _ in range(3):  # let accepted connections register before the listener closes
                await asyncio.sleep(0)
            await runner.cleanup()
        with contextlib.suppress(OSError):
            shutil.rmtree(self.folder)

    async def __aenter__(self) -> HlsLadder:
        self.folder = self.folder.resolve()
        await self.serve()
        try:
            await self.start()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
