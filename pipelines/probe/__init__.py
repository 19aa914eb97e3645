"""`selfie probe`: does a pretrained encoder's representation beat a random one's?"""
