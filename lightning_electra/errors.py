"""The base of every error in what a user gave (a config, a data file, a results directory, a run that diverged):
its message says what is wrong and what to do, so the command line prints it alone, without a traceback."""


class SuiteError(Exception):
    """An error whose message is for the user; each kind lives beside the code that raises it."""
