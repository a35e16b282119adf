# OpenCompass model config: an agentkit model served by `agentkit serve` (OpenAI-compatible), asked over HTTP.
# Start the server first, e.g.  agentkit serve --model embedded --port 8000 --name agentkit
# then point OpenCompass at it with these variables (defaults in brackets):
#   AGENTKIT_BASE_URL   [http://127.0.0.1:8000/v1]   the server's /v1 address
#   AGENTKIT_MODEL_NAME [agentkit]                   the name the server was given with --name
#   AGENTKIT_API_KEY    [EMPTY]                      the server's --api-key, if it has one
#   AGENTKIT_TOKENIZER  [unset]                      a local tokenizer directory; OpenCompass counts prompt tokens
#                                                    with it (without one it fetches tiktoken files: no network here)
#   AGENTKIT_MAX_OUT_LEN [64], AGENTKIT_BATCH_SIZE [8]
import os

from opencompass.models import OpenAISDK

# chat roles as OpenCompass names them; the server renders them with the model's own template
api_meta_template = dict(round=[
    dict(role='HUMAN', api_role='HUMAN'),
    dict(role='BOT', api_role='BOT', generate=True),
], reserved_roles=[dict(role='SYSTEM', api_role='SYSTEM')])

models = [
    dict(
        abbr=os.environ.get('AGENTKIT_MODEL_NAME', 'agentkit'),
        type=OpenAISDK,
        path=os.environ.get('AGENTKIT_MODEL_NAME', 'agentkit'),
        key=os.environ.get('AGENTKIT_API_KEY', 'EMPTY'),
        openai_api_base=os.environ.get('AGENTKIT_BASE_URL', 'http://127.0.0.1:8000/v1'),
        tokenizer_path=os.environ.get('AGENTKIT_TOKENIZER') or None,
        meta_template=api_meta_template,
        query_per_second=16,
        max_workers=8,  # concurrent requests: the server batches them
        max_out_len=int(os.environ.get('AGENTKIT_MAX_OUT_LEN', '64')),
        max_seq_len=2048,
        batch_size=int(os.environ.get('AGENTKIT_BATCH_SIZE', '8')),
        temperature=0.0,
        retry=2,
    ),
]
