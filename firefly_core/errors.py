"""The one family of errors a user can fix. `cli.py` prints them as one line and exits with code 2."""


class FireflyError(Exception):
    """An error caused by input the user can correct (a file, a flag, a config key)."""


class InputError(FireflyError):
    """Bad content in a user's file: names the file, and the line and field where known."""

    def __init__(self, path, message, line=None, field=None):
        where = str(path)
        if line is not None:
            where += f":{line}"
        if field is not None:
            where += f": field '{field}'"
        super().__init__(f"{where}: {message}")
        self.path, self.line, self.field = path, line, field
