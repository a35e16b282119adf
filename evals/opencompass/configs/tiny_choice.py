# A six-question multiple-choice dataset shipped with agentkit (../data/tiny_choice.jsonl), so a smoke run needs
# no hub download. Scored by exact match of the first option letter in the reply.
import os

from opencompass.datasets import CustomDataset
from opencompass.openicl.icl_evaluator import EMEvaluator
from opencompass.openicl.icl_inferencer import GenInferencer
from opencompass.openicl.icl_prompt_template import PromptTemplate
from opencompass.openicl.icl_retriever import ZeroRetriever
from opencompass.utils.text_postprocessors import first_option_postprocess

tiny_choice_reader_cfg = dict(input_columns=['question', 'A', 'B', 'C', 'D'], output_column='answer')

tiny_choice_infer_cfg = dict(
    prompt_template=dict(type=PromptTemplate, template=dict(round=[
        dict(role='HUMAN', prompt='{question}\nA. {A}\nB. {B}\nC. {C}\nD. {D}\n'
                                  'Answer with the letter of the right option only.'),
    ])),
    retriever=dict(type=ZeroRetriever),
    inferencer=dict(type=GenInferencer),
)

tiny_choice_eval_cfg = dict(
    evaluator=dict(type=EMEvaluator),
    pred_postprocessor=dict(type=first_option_postprocess, options='ABCD'),
)

datasets = [
    dict(
        abbr='agentkit-tiny-choice',
        type=CustomDataset,
        # ({{fileDirname}} is not substituted in configs loaded through read_base; __file__ is set)
        path=os.environ.get('AGENTKIT_OC_DATA')
        or os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'data', 'tiny_choice.jsonl'),
        reader_cfg=tiny_choice_reader_cfg,
        infer_cfg=tiny_choice_infer_cfg,
        eval_cfg=tiny_choice_eval_cfg,
    ),
]
