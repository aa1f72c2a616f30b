"""The new-experiment form's file uploads: stored under a generated name, refused and deleted when bad."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from lfl_web.experiments.models import Experiment

from .test_forms import NEW, field_block, form_data, uploaded_files

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed_in(client, user):
    client.force_login(user)
    return client

GOOD_CSV = "a,b,label\n" + "".join(f"{i},{i % 3},{'yes' if i % 2 else 'no'}\n" for i in range(40))


def csv_upload(text: str, name: str = "my data.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, text.encode(), content_type="text/csv")


def test_an_uploaded_csv_is_stored_under_a_generated_name(signed_in, sent, upload_dir):
    response = signed_in.post(NEW, form_data(dataset="csv", model="mlp", kind="classification", label="label",
                                             data_file=csv_upload(GOOD_CSV, "../../etc/evil.csv")))
    assert response.status_code == 302
    stored = uploaded_files(upload_dir)
    assert len(stored) == 1 and stored[0].suffix == ".csv" and "evil" not in stored[0].name
    assert stored[0].read_text() == GOOD_CSV
    task = Experiment.objects.get().config["task"]
    assert task["data_file"] == str(stored[0]) and task["kind"] == "classification"


@pytest.mark.parametrize(
    ("text", "changes", "message"),
    [
        ("a,b,label\n1,2,yes\n3,4\n", {}, "line 3: 2 fields but the header has 3"),
        (GOOD_CSV, {"label": "target"}, "label column &#x27;target&#x27; not found"),
        ("", {}, "is empty"),
    ],
)
def test_a_bad_csv_is_reported_at_the_file_field_and_deleted(signed_in, sent, upload_dir, text, changes, message):
    fields = {"dataset": "csv", "kind": "classification", "label": "label", **changes}
    data = form_data(data_file=csv_upload(text), **fields)
    response = signed_in.post(NEW, data)
    assert response.status_code == 200
    block = field_block(response.content.decode(), "data_file")
    assert message in block
    assert str(upload_dir) not in response.content.decode()  # the server's path is never shown
    assert not Experiment.objects.exists() and sent == [] and uploaded_files(upload_dir) == []


def test_a_file_that_is_not_csv_or_npz_is_refused_before_it_is_stored(signed_in, sent, upload_dir):
    response = signed_in.post(NEW, form_data(dataset="csv", kind="classification",
                                             data_file=SimpleUploadedFile("data.txt", b"a,b\n1,2\n")))
    assert "must be a .csv or .npz file" in field_block(response.content.decode(), "data_file")
    assert not Experiment.objects.exists() and uploaded_files(upload_dir) == []


def test_an_upload_needs_the_matching_dataset(signed_in, sent, upload_dir):
    response = signed_in.post(NEW, form_data(dataset="digits", kind="classification", data_file=csv_upload(GOOD_CSV)))
    assert "needs dataset &#x27;csv&#x27;" in field_block(response.content.decode(), "data_file")
    assert not Experiment.objects.exists() and uploaded_files(upload_dir) == []


def test_dataset_csv_without_a_file_asks_for_one(signed_in, sent):
    response = signed_in.post(NEW, form_data(dataset="csv", kind="classification"))
    assert "needs data_file" in field_block(response.content.decode(), "data_file")
    assert not Experiment.objects.exists()


# ----------------------------------------------------------------------------- the form agrees with the engine


def test_an_upload_without_its_kind_is_asked_for_it_at_the_kind_field(signed_in, sent, upload_dir):
    response = signed_in.post(NEW, form_data(data_file=csv_upload(GOOD_CSV), dataset="csv", kind="", label="label"))
    assert "needs its kind: choose classification or regression" in field_block(response.content.decode(), "kind")
    assert "None" not in field_block(response.content.decode(), "kind")
    assert not Experiment.objects.exists() and sent == [] and uploaded_files(upload_dir) == []

