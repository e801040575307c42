"""The seed tutorial as a data scientist runs it, pointed at a tracking service by
MLFLOW_TRACKING_URI / _USERNAME / _PASSWORD: scikit-learn autolog on the diabetes data,
then the model loaded back through runs:/ and used. Prints one JSON line."""

import json

import mlflow
from sklearn.datasets import load_diabetes
from sklearn.ensemble import RandomForestRegressor
from sklearn.model_selection import train_test_split

mlflow.set_experiment("diabetes")
mlflow.sklearn.autolog()
X, y = load_diabetes(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
with mlflow.start_run() as run:
    RandomForestRegressor(n_estimators=20, max_depth=6, max_features=3).fit(X_train, y_train)

finished = mlflow.get_run(run.info.run_id)
model = mlflow.pyfunc.load_model("runs:/%s/model" % run.info.run_id)
predictions = model.predict(X_test)
print(json.dumps({
    "run_id": run.info.run_id,
    "status": finished.info.status,
    "metrics": sorted(finished.data.metrics),
    "artifact_uri": finished.info.artifact_uri,
    "predictions": len(predictions),
}))
