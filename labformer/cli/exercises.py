"""``labformer exercises`` (the lab's exercises to hand out) and ``labformer check`` (the checker)."""

from __future__ import annotations

import argparse
import json
import sys

from labformer.exercises.messages import LANGUAGES
from labformer.exercises.sandbox import EXERCISE_SECONDS, MEMORY_MB

EXIT_NOT_ALL_PASS = 1
LANG_HELP = "fr or en (default: French where the locale is French, else English)"


def add_exercises_parsers(commands: argparse._SubParsersAction) -> None:
    exercises = commands.add_parser(
        "exercises",
        help="write the lab's exercises: a notebook and a .py file, with a check after each exercise",
        description="Writes lab8-exercises.ipynb and lab8-exercises.py (or, with --solutions, the teacher's "
        "copy: lab8-exercises-solutions.*, an nbgrader source notebook with the reference answers).",
    )
    exercises.add_argument("--lang", choices=LANGUAGES, help=LANG_HELP)
    exercises.add_argument("--out", default=".", help="the folder to write into (default: .)")
    exercises.add_argument("--solutions", action="store_true", help="the teacher's copy, with the answers")
    exercises.add_argument(
        "--install-from", metavar="ADDRESS",
        help="what the notebook's first cell installs labformer from where it is missing (Colab): a wheel's "
        "address, \"git+https://...\" of a repository, or a package name (default: labformer)",
    )  # fmt: skip
    exercises.set_defaults(handler=_exercises)

    check = commands.add_parser(
        "check",
        help="check a submission of the exercises (FILE.py or FILE.ipynb), or a whole class (--class)",
        description="Runs a submission in a child process with limits and says, for each exercise, whether it "
        "passes or which mistake it makes, with the smallest input that shows it. Exit code: 0 when every "
        "exercise passes, 1 when some do not, 2 for a bad command.",
    )
    check.add_argument("file", nargs="?", metavar="FILE", help="a .py or .ipynb submission")
    check.add_argument("--lang", choices=LANGUAGES, help=LANG_HELP)
    check.add_argument("--only", metavar="NAME", help="one exercise (e.g. AttentionHead, mask)")
    check.add_argument("--json", action="store_true", help="machine-readable verdicts")
    check.add_argument("--timeout", type=float, default=EXERCISE_SECONDS,
                       help=f"seconds each exercise may run (default: {EXERCISE_SECONDS:g})")  # fmt: skip
    check.add_argument("--memory-mb", type=int, default=MEMORY_MB,
                       help=f"memory the submission may allocate, in MB (default: {MEMORY_MB})")  # fmt: skip
    check.add_argument("--class", dest="class_dir", metavar="DIR",
                       help="a folder of submissions: one .py/.ipynb per student, or one sub-folder each")  # fmt: skip
    check.add_argument("--out", help="--class: where grades.csv and report.html go")
    check.add_argument("--jobs", type=int, default=2, help="--class: submissions checked at once (default: 2)")
    check.set_defaults(handler=_check)


def _exercises(args: argparse.Namespace) -> None:
    from labformer.exercises.notebook import write_exercises

    for path in write_exercises(args.out, args.lang, args.solutions, install_from=args.install_from):
        print(path)


def _check(args: argparse.Namespace) -> int:
    from labformer.exercises.messages import Messages

    limits = {"timeout": args.timeout, "memory_mb": args.memory_mb}
    messages = Messages(args.lang)
    if args.class_dir:
        from labformer.exercises.classroom import check_class

        if args.file:
            raise ValueError("give FILE or --class DIR, not both")
        if not args.out:
            raise ValueError("--class needs --out DIR (where grades.csv and report.html go)")
        reports = check_class(args.class_dir, args.out, language=messages.language, jobs=args.jobs,
                              only=args.only, **limits)  # fmt: skip
        print(messages.text("check.wrote", count=len(reports), grades=f"{args.out}/grades.csv",
                            report=f"{args.out}/report.html"))  # fmt: skip
        return 0
    if not args.file:
        raise ValueError("give a FILE to check (a .py or .ipynb submission), or --class DIR")
    from labformer.exercises.checker import check_file

    report = check_file(args.file, language=messages.language, only=args.only, **limits)
    if args.json:
        print(json.dumps(report.as_json(), ensure_ascii=False, indent=1))
    else:
        print(report.text(messages))
        if report.output.strip():
            print(f"\n{messages.text('sandbox.output')}\n{report.output.rstrip()}", file=sys.stderr)
    return 0 if report.passed == len(report.verdicts) else EXIT_NOT_ALL_PASS
