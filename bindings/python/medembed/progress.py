"""The progress line of Model.encode(show_progress_bar=True), drawn as the
medembed CLI draws its own (tools/cli/progress.c): on stderr, in place at
most 4 times a second on a terminal, else one line a second; done/total,
texts/s, tokens/s and an ETA; then a one-line summary."""
import sys
import time

TTY_PERIOD_S = 0.25
LOG_PERIOD_S = 1.0


def _clock(s):
    t = int(s + 0.5)
    return "%d:%02d:%02d" % (t // 3600, t // 60 % 60, t % 60)


class Progress:
    def __init__(self, label, total, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.label, self.total = label, total
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.texts = self.tokens = self.truncated = self.invalid = 0
        self.t0 = time.monotonic()
        self.last = self.t0 - LOG_PERIOD_S  # the first batch draws at once
        self.drew = False

    def add(self, texts, tokens, truncated, invalid):
        self.texts += texts
        self.tokens += tokens
        self.truncated += truncated
        self.invalid += invalid
        now = time.monotonic()
        if now - self.last < (TTY_PERIOD_S if self.tty else LOG_PERIOD_S):
            return
        self.last = now
        dt = now - self.t0
        line = "medembed %s: %d texts" % (self.label, self.texts)
        if self.total:
            line += "  %5.1f%% (%d of %d)" % (100.0 * self.texts / self.total, self.texts,
                                               self.total)
        line += "  %.0f texts/s  %.0f tokens/s" % (self.texts / dt if dt > 0 else 0,
                                                    self.tokens / dt if dt > 0 else 0)
        if self.total and 0 < self.texts < self.total and dt > 0.5:
            line += "  ETA " + _clock(dt * (self.total - self.texts) / self.texts)
        self.stream.write(("\r\033[K" + line) if self.tty else line + "\n")
        self.stream.flush()
        self.drew = self.tty

    def end(self):
        if self.drew:
            self.stream.write("\r\033[K")
        self.stream.write("medembed %s: done: %d texts, %d tokens, %d truncated, %d invalid "
                          "UTF-8, %.1f s\n" % (self.label, self.texts, self.tokens,
                                               self.truncated, self.invalid,
                                               time.monotonic() - self.t0))
        self.stream.flush()
