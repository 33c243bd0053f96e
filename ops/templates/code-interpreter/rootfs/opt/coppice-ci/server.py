"""coppice's code-interpreter server: E2B's port-49999 contract, stdlib only (no Jupyter).

POST /execute {code, context_id?, language?, env_vars?} -> NDJSON lines: stdout, stderr, result,
error, number_of_executions, keepalive, end_of_execution. POST/GET/DELETE /contexts,
POST /contexts/<id>/restart, GET /health.

Each context is a worker process (worker.py) holding its namespace; a cell is one request to it.
A client that goes away interrupts the cell (SIGINT to the worker: KeyboardInterrupt), as E2B's
server interrupts its Jupyter kernel.
"""
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
KEEPALIVE_S = 5.0
LANGUAGES = {'python': 'python', 'py': 'python', 'python3': 'python'}


class Context:
    def __init__(self, language, cwd):
        self.id = str(uuid.uuid4())
        self.language = language
        self.cwd = cwd
        self.lock = threading.Lock()
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            [sys.executable, '-u', os.path.join(HERE, 'worker.py')],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=self.cwd, bufsize=0,
            start_new_session=True,
        )

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self):
        with self.lock:
            self.stop()
            self.start()

    def view(self):
        return {'id': self.id, 'language': self.language, 'cwd': self.cwd}


CONTEXTS = {}
DEFAULT = {}


def new_context(language, cwd):
    ctx = Context(language, cwd)
    CONTEXTS[ctx.id] = ctx
    return ctx


def client_gone(sock):
    """The client closed its side (readable with no data) or reset the connection."""
    try:
        r, _, _ = select.select([sock], [], [], 0)
        if not r:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b''
    except OSError:
        return True


class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def handle(self):
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away; its cell was interrupted

    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header('content-type', 'application/json')
        self.send_header('content-length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get('content-length') or 0)
        raw = self.rfile.read(n) if n else b''
        try:
            return json.loads(raw or b'{}')
        except ValueError:
            return None

    def do_GET(self):
        if self.path.split('?')[0] == '/health':
            return self.reply(200, {'status': 'ok'})
        if self.path.split('?')[0] == '/contexts':
            return self.reply(200, [c.view() for c in CONTEXTS.values()])
        self.reply(404, {'message': 'not found'})

    def do_DELETE(self):
        parts = self.path.split('?')[0].strip('/').split('/')
        if len(parts) == 2 and parts[0] == 'contexts':
            ctx = CONTEXTS.pop(parts[1], None)
            if not ctx:
                return self.reply(404, {'message': 'context %s not found' % parts[1]})
            ctx.stop()
            self.send_response(204)
            self.send_header('content-length', '0')
            self.end_headers()
            return None
        self.reply(404, {'message': 'not found'})

    def do_POST(self):
        path = self.path.split('?')[0].rstrip('/')
        b = self.body()
        if b is None or not isinstance(b, dict):
            return self.reply(400, {'message': 'body must be a JSON object'})
        if path == '/contexts':
            lang = LANGUAGES.get((b.get('language') or 'python').lower())
            if not lang:
                return self.reply(400, {'message': 'language %r is not supported here (python only)' % b.get('language')})
            cwd = b.get('cwd') or '/home/user'
            if not os.path.isdir(cwd):
                return self.reply(400, {'message': 'cwd %s is not a directory' % cwd})
            return self.reply(200, new_context(lang, cwd).view())
        parts = path.strip('/').split('/')
        if len(parts) == 3 and parts[0] == 'contexts' and parts[2] == 'restart':
            ctx = CONTEXTS.get(parts[1])
            if not ctx:
                return self.reply(404, {'message': 'context %s not found' % parts[1]})
            ctx.restart()
            return self.reply(200, ctx.view())
        if path == '/execute':
            return self.execute(b)
        self.reply(404, {'message': 'not found'})

    def execute(self, b):
        code = b.get('code')
        if not isinstance(code, str):
            return self.reply(400, {'message': 'code is required'})
        if b.get('context_id') and b.get('language'):
            return self.reply(400, {'message': 'give context_id or language, not both'})
        if b.get('context_id'):
            ctx = CONTEXTS.get(b['context_id'])
            if not ctx:
                return self.reply(404, {'message': 'context %s not found' % b['context_id']})
        else:
            lang = LANGUAGES.get((b.get('language') or 'python').lower())
            if not lang:
                return self.reply(400, {'message': 'language %r is not supported here (python only)' % b.get('language')})
            ctx = DEFAULT.get(lang) or DEFAULT.setdefault(lang, new_context(lang, '/home/user'))
        self.send_response(200)
        self.send_header('content-type', 'application/x-ndjson')
        self.send_header('transfer-encoding', 'chunked')
        self.end_headers()
        with ctx.lock:
            self.run_cell(ctx, code, b.get('env_vars') or {})

    def run_cell(self, ctx, code, env_vars):
        proc = ctx.proc
        if proc.poll() is not None:
            ctx.start()
            proc = ctx.proc
        proc.stdin.write(json.dumps({'code': code, 'env': env_vars}).encode() + b'\n')
        out = proc.stdout
        buf = b''
        last = time.monotonic()
        listening = True  # the client is still there
        deadline = None  # once interrupted: how long the cell may take to stop
        while True:
            if deadline is not None and time.monotonic() > deadline:
                ctx.restart()  # it ignored the interrupt: a fresh context
                break
            r, _, _ = select.select([out], [], [], 0.25)
            if r:
                chunk = os.read(out.fileno(), 65536)
                if not chunk:
                    self.send_line({'type': 'unexpected_end_of_execution'}, listening)
                    break
                buf += chunk
                done = False
                while b'\n' in buf:
                    raw, buf = buf.split(b'\n', 1)
                    msg = json.loads(raw)
                    if msg.get('type') == 'done':
                        done = True
                        break
                    listening = self.send_line(msg, listening)
                if done:
                    listening = self.send_line({'type': 'end_of_execution'}, listening)
                    break
            if listening and time.monotonic() - last >= KEEPALIVE_S:
                last = time.monotonic()
                listening = self.send_line({'type': 'keepalive'}, listening)
            if listening and client_gone(self.connection):
                listening = False
            if not listening and deadline is None:
                # Nobody reads any more: stop the cell (KeyboardInterrupt in the worker), then
                # keep reading its messages until it says done.
                os.killpg(proc.pid, signal.SIGINT)
                deadline = time.monotonic() + 10
        if listening:
            try:
                self.wfile.write(b'0\r\n\r\n')
                self.wfile.flush()
            except OSError:
                pass
        else:
            self.close_connection = True

    def send_line(self, obj, listening):
        """One NDJSON line as an HTTP chunk; False once the client is gone."""
        if not listening:
            return False
        data = json.dumps(obj).encode() + b'\n'
        try:
            self.wfile.write(b'%x\r\n%s\r\n' % (len(data), data))
            self.wfile.flush()
            return True
        except OSError:
            return False


def main():
    port = int(os.environ.get('COPPICE_CI_PORT', '49999'))
    DEFAULT['python'] = new_context('python', '/home/user' if os.path.isdir('/home/user') else '/')
    server = ThreadingHTTPServer(('0.0.0.0', port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == '__main__':
    main()
