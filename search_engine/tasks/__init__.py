"""What a loss is learned for: data, networks and plain training.

    datasets/   built-in, user files, torchvision and plugin sets, split into train / validation / test
    networks    the models (logistic, mlp, lenet5, allcnnc, resnet18, wideresnet, and plugins' models)
    plugin_check  the installed plugins' data sets loaded and models built, for `plugins --check`
    training    seeded SGD training with a loss, and the task metric
    task        `Task`: the configuration's data and model factory, loaded once per search
"""
