"""What a loss is learned for: data, networks and plain training.

    datasets/   built-in, user files and torchvision sets, split into train / validation / test
    networks    the models (logistic, mlp, lenet5, allcnnc, resnet18, wideresnet)
    training    seeded SGD training with a loss, and the task metric
    task        `Task`: the configuration's data and model factory, loaded once per search
"""
