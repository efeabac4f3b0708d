"""What a run is, torch-free: its settings, evaluation recipes, tasks, rewards, datasets, the
events it reports and the models it names. The web app, the worker and the SDK import only this
part of `training`."""
