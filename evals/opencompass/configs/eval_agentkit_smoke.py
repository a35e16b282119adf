# OpenCompass run config: the shipped tiny multiple-choice set against an agentkit model behind `agentkit serve`.
#   opencompass eval_agentkit_smoke.py -w WORK_DIR
# See agentkit_api.py for the variables that locate the server.
from mmengine.config import read_base

with read_base():
    from .agentkit_api import models
    from .tiny_choice import datasets
