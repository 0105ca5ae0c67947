"""The BiMER web application: upload or record speech, see the emotion.

    python -m bimer_tf.app --model export/bimer/1 [--asr whisper-tiny-offline]
        [--serving-url http://127.0.0.1:8501/v1/models/bimer] [--host 127.0.0.1] [--port 8000]

`create_app(model, recognizer, limits)` builds the Flask application over a
model client (`bimer_tf.app.model_client`); `__main__` serves it with waitress.
The application imports the library; the library never imports it.
"""

from bimer_tf.app.application import create_app
from bimer_tf.app.model_client import SavedModelClient, ServingClient, make_model_client
from bimer_tf.app.uploads import Limits

__all__ = ["Limits", "SavedModelClient", "ServingClient", "create_app", "make_model_client"]
