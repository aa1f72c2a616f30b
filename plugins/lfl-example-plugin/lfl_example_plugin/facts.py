"""The facts lfl reads of this plugin without torch: the objects the package's entry points name.

This module imports nothing heavy: a web page lists the data set and the model, and a configuration
naming them is checked, from these facts alone.
"""

from search_engine.plugins import DatasetPlugin, ModelPlugin

#: scikit-learn's breast cancer data: 212 malignant (class 0) and 357 benign (class 1) samples.
BREAST_CANCER = DatasetPlugin(
    name="breast_cancer",
    label="breast_cancer (3×10 grid, plugin)",
    kind="classification",
    input_shape=(1, 3, 10),  # one channel: rows mean / standard error / worst, columns the ten measurements
    n_outputs=2,
    class_counts=(212, 357),
    loader="lfl_example_plugin.data:load_breast_cancer",
    image=False,  # the thirty values have their own units: each is standardized on its own
)

GRID_CNN = ModelPlugin(
    name="grid_cnn",
    label="grid_cnn (small CNN, plugin)",
    builder="lfl_example_plugin.model:build_grid_cnn",
    min_image_side=2,  # its 2x2 max-pool needs two rows and two columns
)
