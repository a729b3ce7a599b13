"""What the papers' fit loops share beyond common.training (which these would join if it may change): the
evaluation log every few epochs, and a fixed-order batch stream that carries the sample indices."""
from common import training


class EvalLogger(training.EvalLogger):
    """common.training.EvalLogger (metrics against ``y`` after a fit epoch of ``steps`` steps; labels feed this log
    only) at the end of every ``every``-th epoch. With ``epochs`` (the fit's epoch count) the last epoch is always
    logged and every entry names its ``epoch`` (1-based). ``every=1, epochs=None``: training.EvalLogger itself."""

    def __init__(self, predict_labels, x, y, steps, every=1, epochs=None):
        super().__init__(predict_labels, x, y, steps)
        if int(every) < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.every, self.epochs = int(every), epochs

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every == 0 or (self.epochs is not None and epoch + 1 == self.epochs):
            super().on_epoch_end(epoch, logs)
            if self.epochs is not None:
                self.log[-1]["epoch"] = epoch + 1


def indexed_batches(x, order, batch_size, start_step=0):
    """Endless ``((x[idx], idx),)`` batches (idx int32) in the fixed sample ``order``, wrapping around (the last
    batch of a pass is partial), from step ``start_step`` of that cycle on (a resumed run)."""
    starts = list(range(0, len(order), batch_size))
    i = start_step % len(starts)
    while True:
        idx = order[starts[i]:starts[i] + batch_size]
        yield ((x[idx], idx.astype("int32")),)
        i = (i + 1) % len(starts)
