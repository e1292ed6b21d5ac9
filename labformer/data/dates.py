"""Dates written the ways people write them, to ISO ``YYYY-MM-DD``: the encoder–decoder's default task,
generated on the spot from a seeded generator (the standard library's ``datetime``; nothing downloaded).

Each pair comes from a *format*: a template in English ("March 3rd, 2021", "Wed, 3 Mar 2021"), French
("1er mars 2021", "mercredi 3 mars 2021") or numbers ("03/04/2021", "2021.3.4"), with optional leading
zeros, several separators, and casing (as written, lower case, upper case, title case).

**Numbers that read both ways.** "03/04/2021" is the 3rd of April in most of the world and March 4th in
the United States. The convention here: a numeric date whose day and month could be swapped is read **day
first** (d/m/y); month-first (m/d/y) dates occur only when the day is over 12, where no other reading
exists. Year-first dates are always year, month, day.

**Years.** Dates are drawn from the years 1000–2999 (the proleptic Gregorian calendar of ``datetime``), so
that a model learns to copy a year's four digits rather than recall a window of years.

**Held out by construction.** The test split holds what training never sees: every date of the years
:data:`TEST_YEARS`, those whose last two digits are equal (1000, 1011, …, 2999: one in each decade, so
every decade and every digit in every position still occurs in training), and every date written in the
formats of :data:`TEST_FORMATS` (their parts — ordinals, abbreviations, day names, separators, the year
first — occur in training, but never in these combinations).
"""

from __future__ import annotations

import calendar
import datetime
import random
import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["FIRST_YEAR", "FORMATS", "LAST_YEAR", "TEST_FORMATS", "TEST_YEARS", "CalendarCheck", "DateFormat",
           "check_calendar", "date_pairs"]  # fmt: skip

MONTHS_EN = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
             "November", "December"]  # fmt: skip
MONTHS_EN_SHORT = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
MONTHS_FR = ["janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
             "novembre", "décembre"]  # fmt: skip
MONTHS_FR_SHORT = ["janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.", "nov.", "déc."]
DAYS_EN = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
DAYS_EN_SHORT = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
DAYS_FR = ["lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"]
DAYS_FR_SHORT = ["lun.", "mar.", "mer.", "jeu.", "ven.", "sam.", "dim."]

FIRST_YEAR, LAST_YEAR = 1000, 2999  # the years the dates task draws from: a model copies digits, not a window
TEST_YEARS = tuple(y for y in range(FIRST_YEAR, LAST_YEAR + 1) if y % 10 == y // 10 % 10)  # only in test


@dataclass(frozen=True)
class CalendarCheck:
    """Whether an answer is a real date written ``YYYY-MM-DD`` in the (proleptic) Gregorian calendar.

    ``problem`` is None for a real date, else "form" (not four digits, a dash, two, a dash, two), "month"
    (no such month), "day" (no such day in that month: ``days`` says how many it has); ``outside`` is True
    for a real date whose year lies outside FIRST_YEAR–LAST_YEAR, the years the dates task is drawn from.
    """

    text: str
    problem: str | None
    year: int | None = None
    month: int | None = None
    days: int | None = None
    outside: bool = False

    @property
    def real(self) -> bool:
        return self.problem is None

    def describe(self) -> str:
        """In English: "" for a real date in the years learnt, else what is wrong."""
        if self.problem == "form":
            return f"not a date: {self.text!r} is not written YYYY-MM-DD"
        if self.problem == "month":
            return f"not a date: there is no month {self.month}"
        if self.problem == "day":
            return f"not a date: {MONTHS_EN[self.month - 1]} {self.year} has {self.days} days"  # type: ignore[index]
        if self.outside:
            return f"the year {self.year} lies outside {FIRST_YEAR}-{LAST_YEAR}, the years the model learnt"
        return ""


def check_calendar(text: str) -> CalendarCheck:
    """Checks an answer of the dates task against the calendar. ``check_calendar("2021-02-31").describe()``
    is "not a date: February 2021 has 28 days"."""
    match = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", text)
    if not match:
        return CalendarCheck(text, "form")
    year, month, day = map(int, match.groups())
    if year == 0 or not 1 <= month <= 12:  # year 0 does not exist in the Gregorian calendar (1 BC comes before 1)
        return CalendarCheck(text, "form" if year == 0 else "month", year, month)
    days = calendar.monthrange(year, month)[1]
    if not 1 <= day <= days:
        return CalendarCheck(text, "day", year, month, days)
    return CalendarCheck(text, None, year, month, days, outside=not FIRST_YEAR <= year <= LAST_YEAR)


def _ordinal_en(day: int) -> str:
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _day_fr(day: int) -> str:
    return "1er" if day == 1 else str(day)


def _number(value: int, rng: random.Random) -> str:
    """A day or month as a number, with a leading zero half the time (when it has one digit)."""
    return f"{value:02d}" if rng.random() < 0.5 else str(value)


Writer = Callable[[datetime.date, random.Random], str]


@dataclass(frozen=True)
class DateFormat:
    """A way of writing a date: its name, its language ("en", "fr" or "numeric") and its writer."""

    name: str
    language: str
    write: Writer


def _en(name: str, write: Writer) -> DateFormat:
    return DateFormat(name, "en", write)


def _fr(name: str, write: Writer) -> DateFormat:
    return DateFormat(name, "fr", write)


def _numeric(name: str, order: str, separators: str) -> DateFormat:
    def write(date: datetime.date, rng: random.Random) -> str:
        sep = rng.choice(separators)
        parts = {"d": _number(date.day, rng), "m": _number(date.month, rng), "y": str(date.year)}
        return sep.join(parts[c] for c in order)

    return DateFormat(name, "numeric", write)


def _m(d: datetime.date) -> str:
    return MONTHS_EN[d.month - 1]


FORMATS: list[DateFormat] = [
    _en("month day, year", lambda d, r: f"{_m(d)} {d.day}, {d.year}"),
    _en("month ordinal, year", lambda d, r: f"{_m(d)} {_ordinal_en(d.day)}, {d.year}"),
    _en("day month year", lambda d, r: f"{d.day} {_m(d)} {d.year}"),
    _en("ordinal month year", lambda d, r: f"{_ordinal_en(d.day)} {_m(d)} {d.year}"),
    _en("the ordinal of month, year", lambda d, r: f"the {_ordinal_en(d.day)} of {_m(d)}, {d.year}"),
    _en("short month day, year", lambda d, r: f"{MONTHS_EN_SHORT[d.month - 1]} {d.day}, {d.year}"),
    _en("day short month year", lambda d, r: f"{d.day} {MONTHS_EN_SHORT[d.month - 1]} {d.year}"),
    _en("weekday, month day, year", lambda d, r: f"{DAYS_EN[d.weekday()]}, {_m(d)} {d.day}, {d.year}"),
    _en("short weekday, day short month year",
        lambda d, r: f"{DAYS_EN_SHORT[d.weekday()]}, {d.day} {MONTHS_EN_SHORT[d.month - 1]} {d.year}"),
    _en("weekday ordinal month year",  # test only
        lambda d, r: f"{DAYS_EN[d.weekday()]} {_ordinal_en(d.day)} {_m(d)} {d.year}"),
    _en("short month ordinal year",  # test only
        lambda d, r: f"{MONTHS_EN_SHORT[d.month - 1]} {_ordinal_en(d.day)} {d.year}"),
    _fr("jour mois année", lambda d, r: f"{_day_fr(d.day)} {MONTHS_FR[d.month - 1]} {d.year}"),
    _fr("jour mois abrégé année", lambda d, r: f"{_day_fr(d.day)} {MONTHS_FR_SHORT[d.month - 1]} {d.year}"),
    _fr("jour de la semaine jour mois année",
        lambda d, r: f"{DAYS_FR[d.weekday()]} {_day_fr(d.day)} {MONTHS_FR[d.month - 1]} {d.year}"),
    _fr("le jour mois année", lambda d, r: f"le {_day_fr(d.day)} {MONTHS_FR[d.month - 1]} {d.year}"),
    _fr("le jour de la semaine jour mois année",
        lambda d, r: f"le {DAYS_FR[d.weekday()]} {_day_fr(d.day)} {MONTHS_FR[d.month - 1]} {d.year}"),
    _fr("jour sur deux chiffres mois année", lambda d, r: f"{d.day:02d} {MONTHS_FR[d.month - 1]} {d.year}"),
    _fr("jour de la semaine abrégé jour mois année",
        lambda d, r: f"{DAYS_FR_SHORT[d.weekday()]} {_day_fr(d.day)} {MONTHS_FR[d.month - 1]} {d.year}"),
    _fr("jour de la semaine abrégé jour mois abrégé année",  # test only
        lambda d, r: f"{DAYS_FR_SHORT[d.weekday()]} {_day_fr(d.day)} {MONTHS_FR_SHORT[d.month - 1]} {d.year}"),
    _numeric("d/m/y", "dmy", "/-."),
    _numeric("d m y", "dmy", " "),
    _numeric("m/d/y (day over 12)", "mdy", "/-"),  # drawn only for days over 12
    _numeric("y-m-d", "ymd", "- "),
    _numeric("y/m/d", "ymd", "/."),  # test only
]  # fmt: skip
TEST_FORMATS = frozenset(
    {"weekday ordinal month year", "short month ordinal year", "jour de la semaine abrégé jour mois abrégé année",
     "y/m/d"}
)  # fmt: skip
_BY_NAME = {f.name: f for f in FORMATS}


def _cased(text: str, language: str, rng: random.Random) -> str:
    """As written most of the time; else lower, upper or title case (numbers are unchanged)."""
    if language == "numeric":
        return text
    roll = rng.random()
    if roll < 0.7:
        return text
    if roll < 0.8:
        return text.lower()
    if roll < 0.9:
        return text.upper()
    return text.title()


def _random_date(rng: random.Random, years: list[int] | tuple[int, ...]) -> datetime.date:
    year = rng.choice(years)
    start = datetime.date(year, 1, 1).toordinal()
    end = datetime.date(year, 12, 31).toordinal()
    return datetime.date.fromordinal(rng.randint(start, end))


def date_pairs(split: str, count: int, seed: int) -> list[tuple[str, str, str]]:
    """``count`` (source, ISO target, "language: format") triples of ``split`` ("train", "val" or "test"),
    drawn with ``seed`` (each split from its own stream). Train and val share the training formats and
    years; test holds the held-out years with every format, and the held-out formats with every year."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be train, val or test; got {split!r}")
    rng = random.Random(f"dates-{split}-{seed}")
    train_years = [y for y in range(FIRST_YEAR, LAST_YEAR + 1) if y not in TEST_YEARS]
    train_formats = [f for f in FORMATS if f.name not in TEST_FORMATS]
    pairs = []
    while len(pairs) < count:
        if split != "test":
            date, form = _random_date(rng, train_years), rng.choice(train_formats)
        elif rng.random() < 0.5:  # a held-out year, any format
            date, form = _random_date(rng, TEST_YEARS), rng.choice(FORMATS)
        else:  # a held-out format, any year
            date = _random_date(rng, list(range(FIRST_YEAR, LAST_YEAR + 1)))
            form = _BY_NAME[rng.choice(sorted(TEST_FORMATS))]
        if form.name.startswith("m/d/y") and date.day <= 12:
            continue  # month first only where the day cannot be a month
        written = form.write(date, rng)
        # "juin", "mars", "May": where the short name is the full one, a held-out format can write what a
        # training format writes; such a date is not held out, so it is left out.
        if form.name in TEST_FORMATS and written.lower() in {
            f.write(date, rng).lower() for f in train_formats if f.language == form.language != "numeric"
        }:
            continue
        source = _cased(written, form.language, rng)
        pairs.append((source, date.isoformat(), f"{form.language}: {form.name}"))
    return pairs
