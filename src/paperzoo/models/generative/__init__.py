"""Generative models (section G): each one ``nn.Module`` holding all of its networks, trained through the
``generative`` task (``paperzoo.tasks.generative``) by the phases it declares, sampled by ``sample(n)``."""
