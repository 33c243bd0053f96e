"""One code-interpreter context: a namespace that lives across cells.

Reads one JSON request per line on stdin ({code, env}); writes JSON messages, one per line, on its
original stdout: stdout/stderr text as it is printed, the last expression's value as the main
result, matplotlib figures as PNG results, an error with name/value/traceback, then the
execution count and a done marker. SIGINT (from the server, when the client went away) becomes
a KeyboardInterrupt in the running cell.
"""
import ast
import base64
import io
import json
import os
import signal
import sys
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.fdopen(os.dup(1), 'w', buffering=1)
sys.stdin = io.TextIOWrapper(os.fdopen(0, 'rb', buffering=0))
# The cell's own writes to fd 1 and 2 (e.g. from subprocesses) must not corrupt the message stream.
devnull = os.open(os.devnull, os.O_WRONLY)
os.dup2(devnull, 1)


def send(msg):
    OUT.write(json.dumps(msg) + '\n')
    OUT.flush()


class Stream(io.TextIOBase):
    """Line-buffered: `print('hi')` is one message 'hi\\n', as from a Jupyter kernel."""

    def __init__(self, name):
        self.name = name
        self.pending = ''

    def writable(self):
        return True

    def write(self, s):
        self.pending += s
        if '\n' in self.pending:
            head, _, self.pending = self.pending.rpartition('\n')
            send({'type': self.name, 'text': head + '\n'})
        return len(s)

    def flush(self):
        if self.pending:
            send({'type': self.name, 'text': self.pending})
            self.pending = ''


def figures():
    """Every open matplotlib figure as a PNG result (then closed), if matplotlib was used."""
    plt = sys.modules.get('matplotlib.pyplot')
    if plt is None:
        return
    for num in plt.get_fignums():
        fig = plt.figure(num)
        buf = io.BytesIO()
        fig.savefig(buf, format='png')
        send({'type': 'result', 'is_main_result': False, 'png': base64.b64encode(buf.getvalue()).decode(),
              'text': '<Figure size %dx%d with %d Axes>' % (fig.get_figwidth() * fig.dpi, fig.get_figheight() * fig.dpi, len(fig.axes))})
        plt.close(fig)


def represent(value):
    out = {'type': 'result', 'is_main_result': True, 'text': repr(value)}
    for attr, key in (('_repr_html_', 'html'), ('_repr_markdown_', 'markdown'), ('_repr_svg_', 'svg'), ('_repr_latex_', 'latex'), ('_repr_json_', 'json')):
        fn = getattr(value, attr, None)
        if callable(fn):
            try:
                r = fn()
                if r is not None:
                    out[key] = r
            except Exception:
                pass
    return out


def run(code, namespace):
    tree = ast.parse(code, '<cell>', 'exec')
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    exec(compile(tree, '<cell>', 'exec'), namespace)
    if last is not None:
        value = eval(compile(last, '<cell>', 'eval'), namespace)
        if value is not None:
            namespace['_'] = value
            return value
    return None


def main():
    # Started in the background by a shell, SIGINT would be ignored (inherited SIG_IGN): make it
    # the KeyboardInterrupt the server's interrupt relies on.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.environ.setdefault('MPLBACKEND', 'Agg')
    namespace = {'__name__': '__main__'}
    count = 0
    sys.stdout = Stream('stdout')
    sys.stderr = Stream('stderr')
    for raw in sys.stdin:
        try:
            req = json.loads(raw)
        except ValueError:
            continue
        count += 1
        for k, v in (req.get('env') or {}).items():
            os.environ[str(k)] = str(v)
        try:
            value = run(req.get('code') or '', namespace)
            figures()
            if value is not None:
                send(represent(value))
        except BaseException as e:  # KeyboardInterrupt too: the cell ends, the context stays
            sys.stdout.flush()
            sys.stderr.flush()
            # The cell's frames only (not this worker's).
            frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == '<cell>' or not f.filename.startswith(HERE)]
            tb = ['Traceback (most recent call last):\n', *traceback.format_list(frames), *traceback.format_exception_only(type(e), e)]
            send({'type': 'error', 'name': type(e).__name__, 'value': str(e), 'traceback': ''.join(tb)})
        sys.stdout.flush()
        sys.stderr.flush()
        send({'type': 'number_of_executions', 'execution_count': count})
        send({'type': 'done'})


if __name__ == '__main__':
    try:
        main()
    except KeyboardInterrupt:
        pass
