"""Sequential recommenders (SASRec, knowledge-augmented SASRec, popularity) and the recsys reward model."""

from rec_gym.recsys.model import PopularityRecommender, SASRecRecommender
from rec_gym.recsys.sasrec import SASRec, SASRecConfig
from rec_gym.recsys.training import evaluate_recommender, train_sasrec

__all__ = ["PopularityRecommender", "SASRec", "SASRecConfig", "SASRecRecommender", "evaluate_recommender",
           "train_sasrec"]
