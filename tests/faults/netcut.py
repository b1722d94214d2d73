"""A TCP proxy on loopback that can black-hole its connections (the relay-netcut fault,
docs/faults.md).

While `cut()` holds, nothing is forwarded in either direction and no socket is closed: bytes
already read wait in the proxy, the peers' kernels keep acknowledging what they send (so
neither side sees a FIN, a reset or a retransmission timeout), and a new connection is accepted
but not connected upstream. That is what a process sees when its host's network is cut,
except that TCP keepalives are still answered by the local kernel: see docs/faults.md.
`restore()` resumes forwarding; a side that closed meanwhile is then closed on the other side.

The proxy runs its own asyncio loop on a daemon thread; cut() and restore() are thread-safe.
"""

import asyncio
import threading

BUF = 65536


class NetCutProxy:
    def __init__(self, upstream_host, upstream_port, listen_host="127.0.0.1"):
        self.upstream = (upstream_host, upstream_port)
        self.listen_host = listen_host
        self.port = None
        self.loop = asyncio.new_event_loop()
        self.flowing = None  # asyncio.Event, set while forwarding
        self.conns = 0
        self.held = 0  # connections accepted while cut, not yet connected upstream
        self._server = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="netcut-proxy", daemon=True)

    def start(self):
        self._thread.start()
        if not self._ready.wait(10) or self.port is None:
            raise RuntimeError("netcut proxy did not start")
        return self

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.flowing = asyncio.Event()
        self.flowing.set()
        self._server = self.loop.run_until_complete(
            asyncio.start_server(self._client, self.listen_host, 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self.loop.run_forever()

    async def _pipe(self, reader, writer):
        try:
            while True:
                await self.flowing.wait()
                data = await reader.read(BUF)
                await self.flowing.wait()  # read before the cut: held until restored
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            await self.flowing.wait()  # no FIN while cut
            try:
                writer.close()
            except (ConnectionError, OSError, RuntimeError):
                pass

    async def _client(self, creader, cwriter):
        self.conns += 1
        if not self.flowing.is_set():
            self.held += 1
            await self.flowing.wait()
            self.held -= 1
        try:
            ureader, uwriter = await asyncio.open_connection(*self.upstream)
        except OSError:
            cwriter.close()
            return
        await asyncio.gather(self._pipe(creader, uwriter), self._pipe(ureader, cwriter))

    def _call(self, fn):
        self.loop.call_soon_threadsafe(fn)

    def cut(self):
        """Stops forwarding; every socket stays open."""
        self._call(self.flowing.clear)

    def restore(self):
        """Forwards again."""
        self._call(self.flowing.set)

    def stop(self):
        def _stop():
            self.flowing.set()
            if self._server is not None:
                self._server.close()
            self.loop.stop()
        if self._thread.is_alive():
            self._call(_stop)
            self._thread.join(5)
