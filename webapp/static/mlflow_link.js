// The tracking URI's page (/mlflow/<project id>/): the mlflow client prints a run's link as
// <tracking uri>/#/experiments/<id>/runs/<id>, the MLflow UI's address, whose fragment never
// reaches the server. Open the run's page (or the experiment's) instead; ids are digits only,
// so no other address can be reached this way. Without a fragment the page stays, a list.
(function () {
  "use strict";
  const root = document.getElementById("mlflow-link");
  if (!root) return;
  const match = /^#\/experiments\/(\d{1,18})(?:\/runs\/(\d{1,18}))?\/?(?:[?#].*)?$/.exec(location.hash);
  if (!match) return;
  const [, experimentId, runId] = match;
  const withId = (template, id) => template.replace(/\/0\/$/, "/" + id + "/");
  let target;
  if (runId) {
    target = withId(root.dataset.runUrl, runId);
  } else if (experimentId === "0") {
    target = root.dataset.defaultExperimentUrl;  // MLflow's "Default" experiment
  } else {
    target = withId(root.dataset.experimentUrl, experimentId);
  }
  if (target) location.replace(target);
})();
