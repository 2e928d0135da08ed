"""Text clean-up shared by training and prediction (a support file, imported by the control file)."""
import re

_URL = re.compile(r"https?://\S+|www\.\S+")
_NON_WORD = re.compile(r"[^a-z0-9'!?\s]+")
_SPACES = re.compile(r"\s+")
# "not good" and "good" mean opposite things; joining the negation keeps them apart for TF-IDF.
_NEGATION = re.compile(r"\b(not|no|never|don't|doesn't|didn't|isn't|wasn't|won't|can't)\s+(\w+)")


def clean(text, lowercase=True):
    text = str(text)
    if lowercase:
        text = text.lower()
    text = _URL.sub(" ", text)
    text = _NON_WORD.sub(" ", text) if lowercase else re.sub(r"[^A-Za-z0-9'!?\s]+", " ", text)
    text = _NEGATION.sub(lambda m: f"{m.group(1)}_{m.group(2)}", text)
    return _SPACES.sub(" ", text).strip()
