from django.urls import path

from mlopen.web.views import account, dashboard, datasets, pipeline_code, pipelines, runs, webhooks

app_name = "web"
urlpatterns = [
    path("", dashboard.home, name="home"),
    path("pipelines/", pipelines.pipeline_list, name="pipeline-list"),
    path("pipelines/upload/", pipelines.pipeline_upload, name="pipeline-upload"),
    path("pipelines/<id:pk>/", pipelines.pipeline_detail, name="pipeline-detail"),
    path("pipelines/<id:pk>/visibility/", pipelines.pipeline_visibility, name="pipeline-visibility"),
    path("pipelines/<id:pk>/first-run/", pipelines.pipeline_first_run, name="pipeline-first-run"),
    path("pipelines/<id:pk>/versions/<id:number>/files/", pipeline_code.version_files, name="pipeline-files"),
    path(
        "pipelines/<id:pk>/versions/<id:number>/files/<path:path>",
        pipeline_code.version_files,
        name="pipeline-file",
    ),
    path(
        "pipelines/<id:pk>/versions/<id:number>/download/<path:path>",
        pipeline_code.version_file_download,
        name="pipeline-file-download",
    ),
    path("pipelines/<id:pk>/compare/", pipeline_code.version_compare, name="pipeline-compare"),
    path("datasets/", datasets.dataset_list, name="dataset-list"),
    path("datasets/upload/", datasets.dataset_upload, name="dataset-upload"),
    path("datasets/<id:pk>/", datasets.dataset_detail, name="dataset-detail"),
    path("datasets/<id:pk>/delete/", datasets.dataset_delete, name="dataset-delete"),
    path("datasets/<id:pk>/share/", datasets.dataset_share, name="dataset-share"),
    path("runs/", runs.run_list, name="run-list"),
    path("runs/new/", runs.run_new, name="run-new"),
    path("runs/new/params/", runs.run_new_params, name="run-new-params"),
    path("runs/<id:pk>/", runs.run_detail, name="run-detail"),
    path("runs/<id:pk>/status/", runs.run_status, name="run-status"),
    path("runs/<id:pk>/table/", runs.run_table, name="run-table"),
    path("runs/<id:pk>/cancel/", runs.run_cancel, name="run-cancel"),
    path("runs/<id:pk>/rerun/", runs.run_rerun, name="run-rerun"),
    path("runs/<id:pk>/share/", runs.run_share, name="run-share"),
    path("runs/<id:pk>/graphs/<id:index>/", runs.graph_frame, name="run-graph"),
    path("account/", account.account, name="account"),
    path("account/tokens/", account.token_create, name="account-token-create"),
    path("account/tokens/<id:pk>/rotate/", account.token_rotate, name="account-token-rotate"),
    path("account/tokens/<id:pk>/revoke/", account.token_revoke, name="account-token-revoke"),
    path("account/password/", account.password_change, name="account-password"),
    path("account/webhooks/", webhooks.webhook_list, name="webhook-list"),
]
