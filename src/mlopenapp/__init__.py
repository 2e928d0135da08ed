"""Import paths the original mlopen offered to control files; they must keep working unchanged.

`from mlopenapp.utils import io_handler as io` and `from mlopenapp.utils import plotter`.
"""
