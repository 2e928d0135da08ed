"""Import paths the original mlopen offered to control files; they must keep working unchanged.

`from mlopenapp.utils import io_handler as io`, `plotter`, `data_handler`, `params_handler`, and
`mlopenapp.constants`. Inside a run, `mlopenapp.pipelines` is the pipeline's own code folder
(mlopen_runner.legacy); it does not exist outside one.
"""
