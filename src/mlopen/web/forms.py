"""Forms of the web pages. They collect what the user typed; the domain services decide if it is valid."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib.auth.forms import PasswordChangeForm
from django.contrib.auth.models import Group
from django.db.models import Q
from django.template.defaultfilters import filesizeformat

from mlopen.core.numbers import parse_int
from mlopen.core.sharing import shareable_groups
from mlopen.datasets.models import Dataset
from mlopen.pipelines import params as params_mod
from mlopen.pipelines import registry, runtimes
from mlopen.pipelines.models import ModelAlias, Pipeline
from mlopen.runs.models import Run

PARAM_PREFIX = "params."


class BootstrapMixin:
    """Give every widget the Bootstrap class that matches it."""

    def style_widgets(self) -> None:
        for field in self.fields.values():
            widget = field.widget
            if isinstance(widget, forms.CheckboxInput):
                css = "form-check-input"
            elif isinstance(widget, forms.RadioSelect):
                css = "btn-check"
            elif isinstance(widget, forms.Select):
                css = "form-select"
            else:
                css = "form-control"
            widget.attrs["class"] = f"{widget.attrs.get('class', '')} {css}".strip()

    def add_refusal(self, field: str | None, message: str) -> None:
        """Show a service's refusal next to its field, or above the form if no field matches."""
        self.add_error(field if field in self.fields else None, message)


class MultipleFileInput(forms.FileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput())
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        if isinstance(data, (list, tuple)):
            return [super(MultipleFileField, self).clean(item, initial) for item in data]
        return [super().clean(data, initial)] if data else []


class PipelineUploadForm(BootstrapMixin, forms.Form):
    control = forms.FileField(
        label="Control file",
        help_text="The Python file that defines train(inpt, params=None) and "
        "run_pipeline(input, model, args, params=None).",
        widget=forms.FileInput(attrs={"accept": ".py"}),
    )
    support_files = MultipleFileField(
        required=False,
        allow_empty_file=True,
        label="Support files",
        help_text="Optional: modules, vocabularies, weights… They are placed beside the control file.",
    )
    support_folder = MultipleFileField(
        required=False,
        allow_empty_file=True,
        label="Support folder",
        help_text="Optional: a folder (a package such as textnet/, data such as nltk_data/), kept with its "
        "subfolders beside the control file. Hidden files and __pycache__ are left out.",
        widget=MultipleFileInput(attrs={"webkitdirectory": True, "data-folder-picker": True}),
    )
    support_zip = forms.FileField(
        required=False,
        allow_empty_file=True,
        label="Support files as a zip",
        help_text="Optional: a zip unpacked beside the control file, paths as they are in the zip "
        "(for several folders, or more files than a folder upload takes).",
        widget=forms.FileInput(attrs={"accept": ".zip"}),
    )
    requirements = forms.FileField(
        required=False,
        allow_empty_file=True,
        label="requirements.txt",
        help_text="Optional: extra packages. The pipeline then gets its own environment, built before its first run.",
        widget=forms.FileInput(attrs={"accept": ".txt"}),
    )
    runtime = forms.ChoiceField(
        required=False,
        label="Runtime",
        help_text="The locked package set it runs on (numpy, pandas 2, scikit-learn, …); requirements.txt adds to it.",
    )
    name = forms.CharField(
        required=False,
        max_length=100,
        help_text="Leave empty to use the control file's name. Uploading under an existing name adds a new version "
        "(for its owner, its maintainers and admins).",
    )
    description = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="What the pipeline does and what input it expects. Empty: the control file's docstring.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # One request takes at most this many files: the folder picker says so before sending.
        self.fields["support_folder"].widget.attrs["data-max-files"] = settings.DATA_UPLOAD_MAX_NUMBER_FILES or 0
        default = settings.MLOPEN_DEFAULT_RUNTIME
        self.fields["runtime"].choices = [
            (name, f"{name} (default)" if name == default else name) for name in runtimes.known()
        ]
        self.fields["runtime"].initial = default
        self.style_widgets()


class DatasetUploadForm(BootstrapMixin, forms.Form):
    file = forms.FileField(
        label="File", help_text="A CSV table, a text file, a zip archive… whatever the pipeline reads."
    )
    name = forms.CharField(required=False, max_length=200, help_text="Optional. Empty: the file's name.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.style_widgets()


def _dataset_label(dataset: Dataset) -> str:
    return f"{dataset.name} ({dataset.get_kind_display()}, {filesizeformat(dataset.size)})"


class DatasetChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj):
        return _dataset_label(obj)


_TYPE_HELP = {
    "string": "Text",
    "integer": "A whole number",
    "float": "A number",
    "bool": "",
    "choice": "",
    "file": "One of your datasets",
    "upload": "A file sent with this run (kept as one of your datasets)",
}


def _param_help(spec: dict) -> str:
    """'A whole number; empty means 5.' — what the field takes, and what leaving it empty does."""
    text = _TYPE_HELP.get(spec["type"], "")
    if spec["type"] in ("integer", "float") and "default" in spec:
        text += f"; empty means {spec['default']}"
    elif text and not params_mod.is_required(spec) and "default" not in spec:
        text += "; optional"
    return f"{text}." if text else ""


def _param_field(spec: dict, datasets) -> forms.Field:
    """One form field for one get_params entry. Values are converted by the domain, not here."""
    kind = spec["type"]
    required = params_mod.is_required(spec)
    default = spec.get("default")
    attrs = {"required": True} if required else {}
    if kind == "bool":
        return forms.BooleanField(required=False, initial=bool(default))
    if kind == "integer":
        return forms.CharField(required=False, initial=default, widget=forms.NumberInput(attrs={**attrs, "step": 1}))
    if kind == "float":
        return forms.CharField(
            required=False, initial=default, widget=forms.NumberInput(attrs={**attrs, "step": "any"})
        )
    if kind == "choice":
        choices = [(str(c), str(c)) for c in spec.get("choices", [])]
        if default is None:
            choices.insert(0, ("", "Choose…"))
        return forms.CharField(required=False, initial=default, widget=forms.Select(choices=choices, attrs=attrs))
    if kind == "file":
        choices = [("", "Choose one of your datasets…")] + [(str(d.pk), _dataset_label(d)) for d in datasets]
        return forms.CharField(required=False, widget=forms.Select(choices=choices, attrs=attrs))
    if kind == "upload":
        return forms.FileField(required=False, widget=forms.FileInput(attrs=attrs))
    return forms.CharField(required=False, initial=default, widget=forms.TextInput())


class RunForm(BootstrapMixin, forms.Form):
    """Pipeline, kind, input and the parameter fields that the pipeline version's get_params describes."""

    pipeline = forms.ModelChoiceField(queryset=Pipeline.objects.none(), empty_label="Choose a pipeline…")
    kind = forms.ChoiceField(
        choices=[(Run.Kind.TRAIN, "Train"), (Run.Kind.RUN, "Run")], initial=Run.Kind.RUN, widget=forms.RadioSelect
    )
    input = DatasetChoiceField(
        queryset=Dataset.objects.none(), required=False, empty_label="No input file", label="Dataset"
    )
    input_upload = forms.FileField(
        required=False, label="…or upload a new file", help_text="It is kept as one of your datasets."
    )
    timeout = forms.IntegerField(
        required=False,
        min_value=1,
        label="Time limit (seconds)",
        help_text="Optional. The pipeline's own limit still applies if it is lower.",
    )

    version = forms.ChoiceField(required=False, label="Version")
    model = forms.ChoiceField(required=False, label="Model")

    def __init__(self, *args, user, pipeline: Pipeline | None, kind: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.pipeline_obj = pipeline
        self.kind_value = kind
        self.user = user
        self.version = self._chosen_version(pipeline)
        self._model_choices(pipeline, kind)
        self.fields["pipeline"].queryset = Pipeline.objects.visible_to(user).order_by("name")
        visible = Dataset.objects.visible_to(user).order_by("name", "-id")
        self.fields["input"].queryset = visible
        if pipeline is not None and pipeline.input_required:
            self.fields["input"].empty_label = "Choose a dataset…"
            self.fields["input"].is_param_required = True  # the asterisk; Start waits for it (or an upload)
            self.fields["input"].help_text = f"{pipeline.name} needs an input: choose a dataset or upload a file."
        self.spec = self.version.params_for(kind) if self.version else []
        datasets = list(visible) if any(spec["type"] == "file" for spec in self.spec) else []
        self.param_names = []
        for spec in self.spec:
            name = PARAM_PREFIX + spec["name"]
            field = _param_field(spec, datasets)
            field.label = spec["name"]
            field.help_text = _param_help(spec)
            field.spec = spec
            field.is_param_required = params_mod.is_required(spec)
            self.fields[name] = field
            self.param_names.append(name)
        self.style_widgets()

    def _chosen_version(self, pipeline: Pipeline | None):
        """The version the form is for (its parameters depend on it): the one chosen, else the latest."""
        if pipeline is None:
            self.fields["version"].choices = [("", "Latest")]
            return None
        numbers = list(pipeline.versions.order_by("-number").values_list("number", flat=True))
        latest = numbers[0] if numbers else None
        self.fields["version"].choices = [("", f"Latest (v{latest})" if latest else "Latest")] + [
            (str(n), f"v{n}") for n in numbers
        ]
        raw = str((self.data.get("version") if self.is_bound else self.initial.get("version")) or "")
        number = parse_int(raw)
        if number is not None and number in numbers:
            return pipeline.versions.get(number=number)
        return pipeline.latest_version

    def _model_choices(self, pipeline: Pipeline | None, kind: str) -> None:
        """The run's model: the default (production, else the newest), an alias, or one model by number."""
        field = self.fields["model"]
        field.choices = [("", "Default")]
        if pipeline is None or kind != Run.Kind.RUN:
            return
        default, alias = registry.default_model(pipeline)
        if default is not None:
            field.choices = [("", f"Default: {alias or 'newest'} (model #{default.number})")]
        aliases = list(ModelAlias.objects.filter(pipeline=pipeline).select_related("model").order_by("name"))
        field.choices += [(a.name, f"alias {a.name} (model #{a.model.number})") for a in aliases]
        models = pipeline.trained_models.select_related("version").order_by("-number")[:100]
        field.choices += [
            (str(m.pk), f"model #{m.number} (v{m.version.number}, {m.created_at:%Y-%m-%d %H:%M})") for m in models
        ]
        field.help_text = "Which trained model the run uses."

    @property
    def param_fields(self):
        return [self[name] for name in self.param_names]

    @property
    def upload_param_names(self) -> list[str]:
        return [name for name in self.param_names if self.fields[name].spec["type"] == "upload"]

    def raw_params(self) -> dict:
        """Submitted parameter values, still as typed (None where left empty); uploads are left out."""
        values = {}
        for name in self.param_names:
            if name in self.upload_param_names:
                continue
            value = self.cleaned_data.get(name)
            values[name[len(PARAM_PREFIX) :]] = None if value == "" else value
        return values


class ShareForm(forms.Form):
    """The owner's sharing buttons on a dataset or run page: one action per submit."""

    ACTIONS = [
        ("everyone", "Share with everyone"),
        ("group", "Share with a group"),
        ("unshare-group", "Stop sharing with a group"),
        ("private", "Stop sharing"),
    ]
    action = forms.ChoiceField(choices=ACTIONS)
    group = forms.ModelChoiceField(queryset=Group.objects.none(), required=False, empty_label="Choose a group…")

    def __init__(self, *args, user, obj, **kwargs):
        super().__init__(*args, **kwargs)
        # Groups the owner may add, and the ones already there (to remove one they have left).
        self.fields["group"].queryset = Group.objects.filter(
            Q(pk__in=shareable_groups(user).values("pk")) | Q(pk__in=obj.shared_groups.values("pk"))
        ).order_by("name")
        self.fields["group"].widget.attrs["class"] = "form-select form-select-sm"

    def clean(self):
        data = super().clean()
        if data.get("action") in ("group", "unshare-group") and not data.get("group"):
            self.add_error("group", "Choose a group.")
        return data


class PipelineMaintainersForm(forms.Form):
    """The owner names who else may publish the pipeline's versions (mlopen.pipelines.maintainers)."""

    maintainers = forms.CharField(
        required=False,
        max_length=2000,
        label="Maintainers",
        help_text="Usernames of authors, separated by commas; empty: none.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["maintainers"].widget.attrs["class"] = "form-control form-control-sm"


class PipelineVisibilityForm(forms.Form):
    group = forms.ModelChoiceField(
        queryset=Group.objects.none(), required=False, empty_label="Everyone who can log in", label="Visible to"
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["group"].queryset = shareable_groups(user)
        self.fields["group"].widget.attrs["class"] = "form-select form-select-sm"


class PipelineFirstRunForm(BootstrapMixin, forms.Form):
    """What a newcomer's first run starts from: whether an input is needed, and the example datasets."""

    input_required = forms.BooleanField(
        required=False,
        label="Its runs need an input dataset",
        help_text="Start stays disabled until one is chosen; a run without one is refused.",
    )
    train_example = DatasetChoiceField(
        queryset=Dataset.objects.none(), required=False, empty_label="No example", label="Example to train on"
    )
    run_example = DatasetChoiceField(
        queryset=Dataset.objects.none(), required=False, empty_label="No example", label="Example to run on"
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        visible = Dataset.objects.visible_to(user).order_by("name", "-id")
        self.fields["train_example"].queryset = visible
        self.fields["run_example"].queryset = visible
        self.style_widgets()


class TokenCreateForm(BootstrapMixin, forms.Form):
    LIFETIMES = [("", "Never expires"), ("7", "7 days"), ("30", "30 days"), ("90", "90 days"), ("365", "1 year")]

    name = forms.CharField(max_length=100, help_text="What or where it is used: “laptop”, “CI”.")
    expires_in_days = forms.TypedChoiceField(
        choices=LIFETIMES, coerce=int, empty_value=None, required=False, label="Expires"
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.style_widgets()


class PasswordChangeWithTokensForm(BootstrapMixin, PasswordChangeForm):
    revoke_tokens = forms.BooleanField(
        required=False,
        initial=True,
        label="Also revoke all my API tokens",
        help_text="Scripts and the command line need a new token afterwards.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.style_widgets()
