"""Tables of a paper module as data: the paper's reported numbers (``parse_table``) and its departures
(``departures_markdown``).

    PAPER_RESULTS = parse_table(_T1, ("mnist", "usps"))          # rows 'name acc nmi acc nmi'
    DEPARTURES = [(topic, paper, authors_code, ours_and_option), ...]
    print(departures_markdown(DEPARTURES))
"""

DEPARTURE_COLUMNS = ("topic", "paper", "authors' code", "ours (the option that gives the other)")


def parse_table(text, cols, metrics=("acc", "nmi"), *, percent=False, digits=None, absent=()):
    """{row name: {column: {metric: value} or None}} from rows ``name v v ... [| v v ...]``.

    Each row holds ``len(metrics)`` values per column of ``cols``, in that order; ``|`` may separate the columns
    (then every column between two bars must hold exactly ``len(metrics)`` values). A name may contain spaces
    (the values are the last tokens); blank lines and lines starting with ``#`` are skipped. ``-`` is a missing
    value (None); a column whose first metric is missing is None. ``percent``: values divided by 100;
    ``digits``: then rounded to that many decimals. ``absent``: metric keys the table lacks, set to None in every
    entry. ValueError (naming the row) on a row of another shape or a value that is not a number.
    """
    n, table = len(cols) * len(metrics), {}
    for line in text.strip().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.replace("|", " ").rsplit(None, n)
        segments = line.split("|")
        if len(parts) != n + 1 or not parts[0].strip() or (
                len(segments) > 1 and (len(segments) != len(cols)
                                       or any(len(s.split()) != len(metrics) for s in segments[1:]))):
            raise ValueError(f"malformed table row (need a name and {len(metrics)} values for each of "
                             f"{len(cols)} columns): {line!r}")
        try:
            values = [None if s == "-" else float(s) for s in parts[1:]]
        except ValueError:
            raise ValueError(f"malformed table row (a value is not a number or '-'): {line!r}") from None
        if percent:
            values = [None if v is None else v / 100.0 for v in values]
        if digits is not None:
            values = [None if v is None else round(v, digits) for v in values]
        m = len(metrics)
        table[parts[0].strip()] = {
            c: None if values[m * i] is None else {**dict(zip(metrics, values[m * i:m * (i + 1)])),
                                                   **{a: None for a in absent}}
            for i, c in enumerate(cols)}
    return table


def departures_markdown(rows):
    """A Markdown table of a module's DEPARTURES: rows of four non-empty strings (topic, what the paper says,
    what the authors' code does, which one we follow and the ``--set`` option that gives the other).
    ValueError on any other row; ``|`` in a cell is escaped, line breaks become spaces."""
    lines = ["| " + " | ".join(DEPARTURE_COLUMNS) + " |", "|" + "---|" * len(DEPARTURE_COLUMNS)]
    for row in rows:
        if not (isinstance(row, tuple) and len(row) == len(DEPARTURE_COLUMNS)
                and all(isinstance(c, str) and c.strip() for c in row)):
            raise ValueError(f"a departure is a tuple of {len(DEPARTURE_COLUMNS)} non-empty strings "
                             f"{DEPARTURE_COLUMNS}, got {row!r}")
        lines.append("| " + " | ".join(" ".join(c.split()).replace("|", "\\|") for c in row) + " |")
    return "\n".join(lines)
